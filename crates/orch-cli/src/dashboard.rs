//! `orch dashboard` and the sign-in link `orch serve` prints: a one-time link into the web
//! dashboard for the local user, minted in the store (only its hash is kept there).
//!
//! The link is a secret, so it never goes on a command line: `orch dashboard` writes a small
//! page that forwards to it into the home (`dashboard-sign-in.html`, private like every file
//! there) and opens that file with `xdg-open`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use orch_store::Store;

use crate::cli::DashboardArgs;
use crate::config::Settings;
use crate::UserError;

/// How long a printed sign-in link may be used.
pub const LINK_TTL: Duration = Duration::from_secs(10 * 60);

/// The actor a local user's link signs in.
fn local_actor() -> String {
    crate::config::user_name().unwrap_or_else(|| "local".to_owned())
}

/// A browser cannot reach `0.0.0.0` or `::`: the link names the loopback address instead.
pub fn reachable_base(scheme: &str, addr: SocketAddr) -> String {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    format!("{scheme}://{addr}")
}

/// A new one-time sign-in link into the dashboard at `base`.
pub async fn sign_in_link(store: &Store, base: &str) -> anyhow::Result<String> {
    let token = orch_server::dashboard::auth::create_sign_in_link(store, &local_actor(), LINK_TTL)
        .await
        .context("create a dashboard sign-in link")?;
    Ok(format!(
        "{base}{}",
        orch_server::dashboard::auth::sign_in_link_path(&token)
    ))
}

/// The running daemon's base URL, from `<home>/serve.url` (written once the API listens).
fn daemon_base(home: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(home.join("serve.url")).map_err(|_| {
        UserError::new(format!(
            "no `orch serve` is running for {} (no serve.url there); start it first",
            home.display()
        ))
    })?;
    let text = text.trim();
    let (scheme, addr) = text.split_once("://").with_context(|| {
        format!(
            "{}: `{text}` is not a URL",
            home.join("serve.url").display()
        )
    })?;
    let addr: SocketAddr = addr.parse().with_context(|| {
        format!(
            "{}: `{text}` is not a URL",
            home.join("serve.url").display()
        )
    })?;
    Ok(reachable_base(scheme, addr))
}

/// `orch dashboard`: print a one-time sign-in link and open it in the browser.
pub async fn dashboard(settings: &Settings, args: DashboardArgs) -> anyhow::Result<()> {
    let base = match &args.url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => daemon_base(&settings.home)?,
    };
    let store = crate::commands::open_store(settings).await?;
    let link = sign_in_link(&store, &base).await;
    store.close().await;
    let link = link?;
    println!("{link}");
    eprintln!(
        "orch dashboard: a one-time sign-in link, valid for {} (run `orch dashboard` again for \
         another)",
        humantime::format_duration(LINK_TTL)
    );
    if args.no_open {
        return Ok(());
    }
    let page = settings.home.join("dashboard-sign-in.html");
    let escaped = link.replace('&', "&amp;").replace('"', "&quot;");
    std::fs::write(
        &page,
        format!(
            "<!doctype html><meta charset=\"utf-8\"><meta name=\"referrer\" content=\"no-referrer\">\
             <meta http-equiv=\"refresh\" content=\"0;url={escaped}\"><title>orch</title>\
             <a href=\"{escaped}\">Open the orch dashboard</a>\n"
        ),
    )
    .with_context(|| format!("write {}", page.display()))?;
    // In orch's own group and left running: the browser it starts must outlive this command.
    let started = orch_process::Spawn::new("xdg-open")
        .arg(&page)
        .envs(crate::config::desktop_env())
        .in_callers_group()
        .finish_when_dropped()
        .stdio(
            orch_process::Io::Null,
            orch_process::Io::Null,
            orch_process::Io::Null,
        )
        .start();
    match started {
        Ok(mut running) => {
            if !running.child.wait().await.is_ok_and(|s| s.success()) {
                eprintln!("orch dashboard: xdg-open could not open a browser; open the link above");
            }
        }
        Err(e) if e.io_kind() == Some(std::io::ErrorKind::NotFound) => {
            eprintln!("orch dashboard: no xdg-open here; open the link above in your browser");
        }
        Err(e) => eprintln!("orch dashboard: could not start xdg-open ({e}); open the link above"),
    }
    Ok(())
}

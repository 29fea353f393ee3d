//! Scratch PostgreSQL databases for orch's tests and benchmarks.
//!
//! Every PostgreSQL test gets a fresh database on the server named by
//! `ORCH_TEST_POSTGRES_URL` ([`server_url`]), created by [`ScratchDatabase::create`] and
//! dropped (`WITH (FORCE)`, its connections ended) when the guard is, also when the test
//! panics. Both work inside or outside a Tokio runtime: each runs its SQL on a thread and
//! runtime of its own.

use std::future::Future;

/// The variable naming the test server (its maintenance database, e.g.
/// `postgres://postgres@127.0.0.1:5432/postgres`).
pub const SERVER_VAR: &str = "ORCH_TEST_POSTGRES_URL";

/// The test server's URL, or `None` (with the reason printed for `what`) when
/// `ORCH_TEST_POSTGRES_URL` is unset outside CI. In CI (`CI` set) a missing server fails the
/// test instead of skipping it.
pub fn server_url(what: &str) -> Option<String> {
    match std::env::var(SERVER_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{what}: {SERVER_VAR} is not set, and CI must run the PostgreSQL tests"
            );
            eprintln!(
                "skipped {what} on PostgreSQL: set {SERVER_VAR} (e.g. \
                 postgres://postgres@127.0.0.1:5432/postgres) to run it"
            );
            None
        }
    }
}

/// A database created for one test or measurement, dropped with this guard.
#[derive(Debug)]
pub struct ScratchDatabase {
    /// The server's URL (its maintenance database).
    pub admin_url: String,
    /// The database's name: `<prefix>_<random>`.
    pub name: String,
    /// The URL of the database.
    pub url: String,
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// Runs `work` to its end on a thread and current-thread runtime of its own.
fn on_own_runtime<T, F>(work: impl FnOnce() -> F + Send + 'static) -> T
where
    T: Send + 'static,
    F: Future<Output = T>,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the scratch database")
            .block_on(work())
    })
    .join()
    .expect("the scratch database's thread")
}

impl ScratchDatabase {
    /// Create `<prefix>_<random>` on the server at `admin_url`; panics (saying why) when the
    /// server refuses.
    pub fn create(admin_url: &str, prefix: &str) -> ScratchDatabase {
        let name = format!("{prefix}_{:016x}", rand::random::<u64>());
        let (url, sql) = (admin_url.to_owned(), format!("CREATE DATABASE {name}"));
        on_own_runtime(move || async move { connect(&url).await?.batch_execute(&sql).await })
            .unwrap_or_else(|e| panic!("create the database {name} on {admin_url}: {e}"));
        ScratchDatabase {
            url: with_database(admin_url, &name),
            admin_url: admin_url.to_owned(),
            name,
        }
    }

    /// A connection to the database, for checks that need the driver itself.
    pub async fn connect(&self) -> tokio_postgres::Client {
        connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.url))
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let (url, sql) = (
            self.admin_url.clone(),
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
        let dropped =
            on_own_runtime(move || async move { connect(&url).await?.batch_execute(&sql).await });
        if let Err(e) = dropped {
            eprintln!("could not drop the scratch database {}: {e}", self.name);
        }
    }
}

/// `url` with its database (the path of a `postgres://` URL) replaced by `name`, keeping any
/// query string.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_of_a_url_is_replaced_and_its_query_kept() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h/postgres?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
    }
}

//! `orch config get|set|list`: the merged configuration, key by key, with the layer each value
//! comes from (the home's `config.toml` < the project's `.orch.toml` < `ORCH_*` variables <
//! `--database`), and `set`, which edits the home's `config.toml` in place keeping its
//! comments and layout (toml_edit) after checking that the result is a configuration orch
//! accepts.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::config::Settings;
use crate::output::print_json;
use crate::UserError;

/// `orch config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Show every key set in any layer, its merged value and where it came from.
    List(ConfigListArgs),
    /// Show one key's merged value (dotted, e.g. `agents.enable_real_cli`) and its source.
    Get(ConfigGetArgs),
    /// Set a key in the home's config.toml, keeping the file's comments. VALUE is TOML
    /// (`true`, `3`, `["claude", "sim"]`, `"text"`); anything else is taken as a string.
    Set(ConfigSetArgs),
}

/// `orch config list`.
#[derive(Debug, Args)]
pub struct ConfigListArgs {
    /// The project whose `.orch.toml` is merged [default: the repository or directory you are
    /// in].
    #[arg(long, value_name = "DIR")]
    pub project: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `orch config get`.
#[derive(Debug, Args)]
pub struct ConfigGetArgs {
    /// The key, dotted (`router.mode`, `agents.allowed`).
    pub key: String,
    #[command(flatten)]
    pub list: ConfigListArgs,
}

/// `orch config set`.
#[derive(Debug, Args)]
pub struct ConfigSetArgs {
    /// The key, dotted (`router.mode`, `agents.allowed`).
    pub key: String,
    /// The value, as TOML; a bare word is a string.
    pub value: String,
}

/// One merged key.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Entry {
    /// The dotted key.
    pub key: String,
    /// The value, as TOML text (a database URL's password masked).
    pub value: String,
    /// Where it came from: a file path, an environment variable or a flag.
    pub source: String,
}

/// Run `orch config ...`.
pub fn config(
    settings: &Settings,
    database_flag: Option<&str>,
    command: ConfigCommand,
) -> anyhow::Result<()> {
    match command {
        ConfigCommand::List(args) => {
            let entries = merged(settings, database_flag, args.project.as_deref())?;
            if args.json {
                print_json(&entries)?;
            } else if entries.is_empty() {
                println!(
                    "nothing is set; orch runs on its defaults (set a key with `orch config set \
                     KEY VALUE`, it goes to {})",
                    settings.home.join("config.toml").display()
                );
            } else {
                let width = entries.iter().map(|e| e.key.len()).max().unwrap_or(0);
                for e in &entries {
                    println!("{:width$} = {}    # {}", e.key, e.value, e.source);
                }
            }
        }
        ConfigCommand::Get(args) => {
            let entries = merged(settings, database_flag, args.list.project.as_deref())?;
            let key = args.key.trim();
            let below: Vec<&Entry> = entries
                .iter()
                .filter(|e| e.key.starts_with(&format!("{key}.")))
                .collect();
            match entries.iter().find(|e| e.key == key) {
                Some(entry) if args.list.json => print_json(entry)?,
                Some(entry) => println!("{}    # {}", entry.value, entry.source),
                None if !below.is_empty() => {
                    if args.list.json {
                        print_json(&below)?;
                    } else {
                        for e in below {
                            println!("{} = {}    # {}", e.key, e.value, e.source);
                        }
                    }
                }
                None => {
                    return Err(UserError::new(format!(
                        "`{key}` is not set in {}, the project's .orch.toml or the environment; \
                         orch uses its default (set it with `orch config set {key} VALUE`)",
                        settings.home.join("config.toml").display()
                    ))
                    .into())
                }
            }
        }
        ConfigCommand::Set(args) => {
            let file = settings.home.join("config.toml");
            set(&file, &args.key, &args.value)?;
            println!("set {} in {}", args.key.trim(), file.display());
        }
    }
    Ok(())
}

/// Every key set in some layer, with the value of the layer that wins.
pub fn merged(
    settings: &Settings,
    database_flag: Option<&str>,
    project: Option<&Path>,
) -> anyhow::Result<Vec<Entry>> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut put = |key: String, value: String, source: String| {
        let value = if key == "database" {
            mask_password(&value)
        } else {
            value
        };
        match entries.iter_mut().find(|e| e.key == key) {
            Some(entry) => {
                entry.value = value;
                entry.source = source;
            }
            None => entries.push(Entry { key, value, source }),
        }
    };
    let global = settings.home.join("config.toml");
    for (key, value) in flatten_file(&global)? {
        put(key, value, global.display().to_string());
    }
    let project_dir = match project {
        Some(dir) => crate::project::named("--project", dir)?,
        None => crate::project::current()?,
    };
    let project_file = project_dir.join(".orch.toml");
    if project_file != global {
        for (key, value) in flatten_file(&project_file)? {
            // A project may not choose the database (the home's file or the environment does).
            if key != "database" {
                put(key, value, project_file.display().to_string());
            }
        }
    }
    for (key, variable, value) in crate::config::config_env_layer()? {
        put(key, toml_text(&value), variable);
    }
    if let Some(url) = database_flag.map(str::trim).filter(|u| !u.is_empty()) {
        put("database".into(), toml_text(url), "--database".into());
    }
    entries.sort_by(|a, b| a.key.cmp(&b.key));
    // The merged settings must be ones orch accepts; say so rather than show a broken set.
    if let Err(e) = orch_worker::project::ProjectConfig::load_merged(&settings.home, &project_dir) {
        eprintln!("warning: this configuration is not valid: {e}");
    }
    Ok(entries)
}

/// A value from the environment or a flag as TOML text (a string, quoted).
fn toml_text(value: &str) -> String {
    toml_edit::Value::from(value).to_string().trim().to_owned()
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
fn mask_password(value: &str) -> String {
    let Some((scheme, rest)) = value.split_once("://") else {
        return value.to_owned();
    };
    let Some((credentials, host)) = rest.split_once('@') else {
        return value.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => value.to_owned(),
    }
}

/// Every leaf key of a TOML file, dotted, with its value as TOML text (arrays whole).
fn flatten_file(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
    };
    let doc: toml_edit::DocumentMut = text.parse().map_err(|e| {
        UserError::new(format!(
            "{}: not valid TOML; fix the file: {e}",
            path.display()
        ))
    })?;
    let mut out = Vec::new();
    flatten_table(doc.as_table(), "", &mut out);
    Ok(out)
}

fn flatten_table(table: &toml_edit::Table, prefix: &str, out: &mut Vec<(String, String)>) {
    for (key, item) in table.iter() {
        let dotted = if prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{prefix}.{key}")
        };
        match item {
            toml_edit::Item::Table(inner) => flatten_table(inner, &dotted, out),
            toml_edit::Item::Value(toml_edit::Value::InlineTable(inline)) => {
                let inner = inline.clone().into_table();
                flatten_table(&inner, &dotted, out);
            }
            toml_edit::Item::Value(value) => {
                let mut value = value.clone();
                value.decor_mut().clear();
                out.push((dotted, value.to_string().trim().to_owned()));
            }
            toml_edit::Item::ArrayOfTables(array) => {
                out.push((dotted, format!("[{} table(s)]", array.len())));
            }
            toml_edit::Item::None => {}
        }
    }
}

/// Parse a value given on the command line: TOML if it is one, else a string.
fn parse_value(raw: &str) -> toml_edit::Value {
    match raw.trim().parse::<toml_edit::Value>() {
        Ok(value) => value,
        Err(_) => toml_edit::Value::from(raw),
    }
}

/// Set `key` (dotted) to `raw` in the TOML file `file`, keeping its comments and layout; the
/// result must be a configuration orch accepts, else the file is left unchanged.
pub fn set(file: &Path, key: &str, raw: &str) -> anyhow::Result<()> {
    let key = key.trim();
    let parts: Vec<&str> = key.split('.').map(str::trim).collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(UserError::new(format!(
            "`{key}` is not a key; write it dotted, like `router.mode` or `agents.allowed`"
        ))
        .into());
    }
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("read {}", file.display())),
    };
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e| {
        UserError::new(format!(
            "{}: not valid TOML; fix the file first: {e}",
            file.display()
        ))
    })?;
    let (last, tables) = parts.split_last().expect("a key has at least one part");
    let mut table = doc.as_table_mut();
    for (depth, part) in tables.iter().enumerate() {
        let entry = table
            .entry(part)
            .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()));
        table = match entry {
            toml_edit::Item::Table(inner) => inner,
            _ => {
                return Err(UserError::new(format!(
                    "`{}` is a value in {}, not a table; it cannot hold `{key}`",
                    parts[..=depth].join("."),
                    file.display()
                ))
                .into())
            }
        };
    }
    let value = parse_value(raw);
    match table.get_mut(last) {
        Some(toml_edit::Item::Value(existing)) => {
            // Keep the comment and spacing around the old value.
            let decor = existing.decor().clone();
            *existing = value;
            *existing.decor_mut() = decor;
        }
        Some(toml_edit::Item::Table(_)) | Some(toml_edit::Item::ArrayOfTables(_)) => {
            return Err(UserError::new(format!(
                "`{key}` is a table in {}; set one of its keys instead (`{key}.NAME`)",
                file.display()
            ))
            .into())
        }
        _ => {
            table.insert(last, toml_edit::Item::Value(value));
        }
    }
    let new_text = doc.to_string();
    check(&new_text, file)?;
    let temp = file.with_extension("toml.tmp");
    std::fs::write(&temp, &new_text).with_context(|| format!("write {}", temp.display()))?;
    std::fs::rename(&temp, file).with_context(|| format!("write {}", file.display()))?;
    Ok(())
}

/// Whether `text` is a home config.toml orch accepts (the settings every project starts from).
fn check(text: &str, file: &Path) -> anyhow::Result<()> {
    let scratch = tempfile::tempdir().context("create a scratch directory")?;
    std::fs::write(scratch.path().join("config.toml"), text).context("write the scratch copy")?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| UserError::new(format!("the result is not valid TOML: {e}")))?;
    if let Some(database) = table.get("database") {
        if !database.is_str() {
            return Err(UserError::new(
                "`database` must be a URL in quotes, like \"postgres://user@host/db\"",
            )
            .into());
        }
    }
    orch_worker::project::ProjectConfig::load_global(scratch.path()).map_err(|e| {
        UserError::new(format!(
            "{} was left unchanged: with this value {}",
            file.display(),
            e.message
        ))
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_keeps_comments_and_refuses_what_orch_would_not_accept() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.toml");
        std::fs::write(
            &file,
            "# my settings\nallow_shell = false # not yet\n\n[agents]\n# the real ones\nenable_real_cli = false\n",
        )
        .unwrap();
        set(&file, "allow_shell", "true").unwrap();
        set(&file, "agents.allowed", "[\"claude\", \"sim\"]").unwrap();
        set(&file, "router.mode", "round_robin").unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.starts_with("# my settings\nallow_shell = true # not yet\n"),
            "{text}"
        );
        assert!(
            text.contains("# the real ones\nenable_real_cli = false\n"),
            "{text}"
        );
        assert!(text.contains("allowed = [\"claude\", \"sim\"]"), "{text}");
        assert!(text.contains("[router]\nmode = \"round_robin\""), "{text}");
        let before = std::fs::read_to_string(&file).unwrap();
        let error = set(&file, "allow_shel", "true").unwrap_err().to_string();
        assert!(
            error.contains("allow_shel") && error.contains("unchanged"),
            "{error}"
        );
        assert!(set(&file, "allow_shell.x", "1").is_err());
        assert!(set(&file, "agents", "1").is_err());
        assert_eq!(std::fs::read_to_string(&file).unwrap(), before);
    }

    #[test]
    fn a_database_password_is_masked() {
        assert_eq!(
            mask_password("\"postgres://orch:s3cret@db/orch\""),
            "\"postgres://orch:***@db/orch\""
        );
        assert_eq!(
            mask_password("\"postgres://orch@db/orch\""),
            "\"postgres://orch@db/orch\""
        );
    }
}

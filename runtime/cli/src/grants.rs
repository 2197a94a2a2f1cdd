//! The grants of `sluice run`: flags and a grants file, with secrets.

use anyhow::{anyhow, Context, Result};
use serde_json::Value;
use sluice::capability::sql::SqlMode;
use sluice::Grants;

use crate::args::RunArgs;

pub(crate) fn grants(args: &RunArgs) -> Result<Grants> {
    let mut grants = match &args.grants {
        Some(path) => grants_file(path, &args.allow_http)?,
        None => Grants::none(),
    };
    if args.allow_http_private {
        grants.http.allow_private_addresses = true;
    }
    for origin in &args.allow_http {
        grants = grants.allow_http(origin)?;
    }
    for mount in &args.mount {
        grants = grants.mount(mount)?;
    }
    for entry in &args.allow_tcp {
        grants = grants.allow_tcp(entry)?;
    }
    for entry in &args.secrets {
        let (name, value) = secret_arg("--secret", entry)?;
        grants = grants.secret(&name, &value);
    }
    for entry in &args.socket_secrets {
        let (name, value) = secret_arg("--socket-secret", entry)?;
        grants = grants.allow_socket_secret(&name)?.secret(&name, &value);
    }
    let sql = args.allow_sql.iter().map(|e| (e, SqlMode::ReadOnly));
    let sql_write = args.allow_sql_write.iter().map(|e| (e, SqlMode::ReadWrite));
    for (entry, mode) in sql.chain(sql_write) {
        let (name, url) = entry.split_once('=').ok_or_else(|| {
            anyhow!("sql grant: write NAME=URL, e.g. `main=postgres://user@127.0.0.1/db`")
        })?;
        grants = grants.allow_sql(name, url, mode)?;
    }
    Ok(grants)
}

/// One `--secret` (or `--socket-secret`, the `flag`): `NAME=VALUE`,
/// `NAME=@FILE` or `NAME=env:VAR`. Errors name the secret, the file or the
/// variable, never a value.
pub(crate) fn secret_arg(flag: &str, entry: &str) -> Result<(String, String)> {
    let (name, value) = entry
        .split_once('=')
        .filter(|(name, _)| !name.is_empty())
        .ok_or_else(|| anyhow!("{flag}: write NAME=VALUE, NAME=@FILE or NAME=env:VAR"))?;
    let value = if let Some(path) = value.strip_prefix('@') {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{flag} {name}: cannot read `{path}`"))?;
        let text = text.strip_suffix('\n').unwrap_or(&text);
        text.strip_suffix('\r').unwrap_or(text).to_string()
    } else if let Some(var) = value.strip_prefix("env:") {
        std::env::var(var).map_err(|_| {
            anyhow!("{flag} {name}: the environment variable `{var}` is not set (or not UTF-8)")
        })?
    } else {
        value.to_string()
    };
    Ok((name.to_string(), value))
}

/// The grants file, with the `--allow-http` origins added to its http
/// `origins` before it is checked (flags add to the file), so an `auth` entry
/// in the file may name an origin granted on the command line.
pub(crate) fn grants_file(path: &std::path::Path, allow_http: &[String]) -> Result<Grants> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--grants: cannot read `{}`", path.display()))?;
    let mut spec: Value = serde_json::from_str(&text)
        .map_err(|e| anyhow!("--grants `{}`: not JSON ({e})", path.display()))?;
    if !allow_http.is_empty() {
        let origins = spec
            .as_object_mut()
            .ok_or_else(|| anyhow!("--grants `{}`: expected a JSON object", path.display()))?
            .entry("http")
            .or_insert_with(|| serde_json::json!({}))
            .as_object_mut()
            .ok_or_else(|| anyhow!("--grants `{}`: `http` must be an object", path.display()))?
            .entry("origins")
            .or_insert_with(|| serde_json::json!([]));
        let origins = origins.as_array_mut().ok_or_else(|| {
            anyhow!(
                "--grants `{}`: `http.origins` must be a list",
                path.display()
            )
        })?;
        origins.extend(allow_http.iter().map(|o| Value::String(o.clone())));
    }
    Grants::from_json(&spec.to_string()).with_context(|| format!("--grants `{}`", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_come_from_values_files_and_the_environment() {
        let dir = std::env::temp_dir().join(format!("sluice-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "from-file\n").unwrap();
        assert_eq!(
            secret_arg("--secret", "a=plain").unwrap(),
            ("a".into(), "plain".into())
        );
        assert_eq!(
            secret_arg("--secret", &format!("a=@{}", file.display())).unwrap(),
            ("a".into(), "from-file".into())
        );
        let path = std::env::var("PATH").unwrap();
        assert_eq!(
            secret_arg("--secret", "a=env:PATH").unwrap(),
            ("a".into(), path)
        );
        let missing = secret_arg("--secret", "a=env:SLUICE_NO_SUCH_VARIABLE").unwrap_err();
        assert!(missing
            .to_string()
            .contains("`SLUICE_NO_SUCH_VARIABLE` is not set"));
        let unreadable = secret_arg("--secret", "a=@/no/such/file").unwrap_err();
        assert!(format!("{unreadable:#}").contains("cannot read `/no/such/file`"));
        assert!(secret_arg("--secret", "=x").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

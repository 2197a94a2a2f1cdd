//! The `sluice` binary: JSON and NDJSON on stdout, actionable errors on stderr.

use std::process::{Command, Output};

use serde_json::{json, Value};
use sluice_tests::{guest, root, sluice_bin, tempdir};

fn sluice(args: &[&str]) -> Output {
    Command::new(sluice_bin())
        .args(args)
        .current_dir(root())
        .env_remove("SLUICE_LOG")
        .output()
        .expect("sluice runs")
}

fn stdout_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "sluice failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

fn file_wasm() -> String {
    guest("sluice_file").display().to_string()
}

#[test]
fn fetch_prints_a_json_page() {
    let out = sluice(&[
        "run",
        &file_wasm(),
        "--mount",
        "examples/data:/data:ro",
        "--config",
        r#"{"root": "/data", "csv": {"infer_types": true}}"#,
        "fetch",
        "people.csv",
        "--filter",
        "age=gt:80",
        "--sort",
        "age:desc",
        "--fields",
        "name,age",
        "--page-size",
        "2",
    ]);
    let page = stdout_json(&out);
    assert_eq!(
        page["records"],
        json!([{"name": "Barbara Liskov", "age": 86}, {"name": "Grace Hopper", "age": 85}])
    );
    assert_eq!(page["total_count"], 3);
    assert_eq!(page["next_cursor"], "offset:2");
}

#[test]
fn stream_prints_ndjson_and_resumes_from_a_checkpoint() {
    let base = [
        "run",
        &file_wasm(),
        "--mount",
        "examples/data:/data:ro",
        "--config",
        r#"{"root": "/data"}"#,
    ];
    let mut args = base.to_vec();
    args.extend([
        "stream",
        "people.ndjson",
        "--batch-size",
        "4",
        "--emit-checkpoints",
    ]);
    let out = sluice(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), 6 + 2, "six records and two checkpoints");
    assert_eq!(lines[0]["name"], "Ada Lovelace");
    let checkpoint = lines[4]["_checkpoint"]
        .as_str()
        .expect("checkpoint after the first batch")
        .to_string();
    let mut args = base.to_vec();
    args.extend(["stream", "people.ndjson", "--checkpoint", &checkpoint]);
    let out = sluice(&args);
    let names: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(names, ["Barbara Liskov", "Ken Thompson"]);
}

#[test]
fn execute_writes_through_a_rw_mount() {
    let dir = tempdir();
    let mount = format!("{}:/out:rw", dir.path().display());
    let out = sluice(&[
        "run",
        &file_wasm(),
        "--mount",
        &mount,
        "--config",
        r#"{"root": "/out"}"#,
        "execute",
        "new.ndjson",
        "write",
        "--records",
        r#"[{"a": 1}, {"a": 2}]"#,
    ]);
    assert_eq!(stdout_json(&out)["affected"], 2);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("new.ndjson")).unwrap(),
        "{\"a\":1}\n{\"a\":2}\n"
    );
}

#[test]
fn describe_and_inspect_report_the_connector() {
    let described = stdout_json(&sluice(&["describe", &file_wasm()]));
    assert_eq!(described["name"], "file");
    let inspected = stdout_json(&sluice(&["inspect", &file_wasm()]));
    assert_eq!(
        inspected["exports"],
        json!(["sluice:connector/connector-api@0.1.0"])
    );
    assert_eq!(inspected["sha256"].as_str().unwrap().len(), 64);
    assert!(inspected["imports"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["provided"] == true));
    assert_eq!(
        inspected["size"],
        std::fs::metadata(file_wasm()).unwrap().len()
    );
}

#[test]
fn a_denied_access_fails_with_an_actionable_message() {
    let out = sluice(&[
        "run",
        &guest("sluice_probe").display().to_string(),
        "fetch",
        "tcp",
        "--options",
        r#"{"addr": "127.0.0.1:9"}"#,
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--allow-tcp 127.0.0.1:9"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn bad_input_fails_with_a_message_a_person_can_act_on() {
    let cases: [(&[&str], &str); 4] = [
        (&["run", "Cargo.toml", "health"], "not a WebAssembly file"),
        (
            &[
                "run",
                &file_wasm(),
                "--mount",
                "no/such/dir:/data",
                "health",
            ],
            "no/such/dir",
        ),
        (
            &["run", &file_wasm(), "--config", "{not json", "health"],
            "--config",
        ),
        (
            &["run", &file_wasm(), "fetch", "x.csv", "--filter", "age>3"],
            "FIELD=OP:VALUE",
        ),
    ];
    for (args, needle) in cases {
        let out = sluice(args);
        assert!(!out.status.success(), "{args:?} should fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(needle),
            "{args:?}: stderr `{stderr}` should mention `{needle}`"
        );
    }
}

#[test]
fn help_documents_every_run_option() {
    let out = sluice(&["run", "--help"]);
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--config",
        "--grants",
        "--allow-http",
        "--mount",
        "--allow-tcp",
        "--memory-mib",
        "--cpu-ms",
        "--timeout-ms",
    ] {
        assert!(help.contains(flag), "run --help lacks {flag}");
    }
    let out = sluice(&["run", "x.wasm", "fetch", "--help"]);
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--filter",
        "--sort",
        "--fields",
        "--page-size",
        "--cursor",
        "--offset",
    ] {
        assert!(help.contains(flag), "fetch --help lacks {flag}");
    }
}

//! Hostile guests: every limit stops its guest with a typed error, and the
//! same `Runtime` keeps serving the next session.

use std::time::Duration;

use serde_json::json;
use sluice::{ConnectorError, Error, Grants, Limits, GUEST_OUTPUT_TAIL};
use sluice_tests::{data, probe, probe_request};

fn tight_limits() -> Limits {
    Limits {
        memory_bytes: 64 << 20,
        cpu_per_call: Duration::from_millis(300),
        wall_clock_per_call: Duration::from_secs(20),
        ..Limits::default()
    }
}

/// A following session on the same runtime works.
async fn assert_runtime_still_serves() {
    let mut session = probe()
        .open("{}", &Grants::none())
        .await
        .expect("a new session opens");
    let page = session
        .fetch(&probe_request("env", json!({})))
        .await
        .expect("a new session answers");
    assert_eq!(data(&page.records), vec![json!({})]);
}

#[tokio::test]
async fn infinite_loop_is_stopped_by_the_cpu_limit() {
    let mut session = probe()
        .open_with_limits("{}", &Grants::none(), &tight_limits())
        .await
        .unwrap();
    let err = session
        .fetch(&probe_request("loop", json!({})))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::CpuLimit(limit) if limit == Duration::from_millis(300)),
        "{err:?}"
    );
    assert!(err.is_timeout());
    assert_runtime_still_serves().await;
}

#[tokio::test]
async fn memory_bomb_is_stopped_by_the_memory_limit() {
    let mut session = probe()
        .open_with_limits("{}", &Grants::none(), &tight_limits())
        .await
        .unwrap();
    let err = session
        .fetch(&probe_request("memory-bomb", json!({})))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::MemoryLimit { limit } if limit == 64 << 20),
        "{err:?}"
    );
    assert_runtime_still_serves().await;
}

#[tokio::test]
async fn deep_recursion_traps() {
    let mut session = probe()
        .open_with_limits("{}", &Grants::none(), &tight_limits())
        .await
        .unwrap();
    let err = session
        .fetch(&probe_request("recursion", json!({})))
        .await
        .unwrap_err();
    match &err {
        Error::Trap(what) => assert!(what.contains("stack overflow"), "{what}"),
        other => panic!("expected a stack-overflow trap, got {other:?}"),
    }
    assert_runtime_still_serves().await;
}

#[tokio::test]
async fn a_trap_inside_fetch_returns_an_error() {
    let mut session = probe().open("{}", &Grants::none()).await.unwrap();
    let err = session
        .fetch(&probe_request("trap", json!({})))
        .await
        .unwrap_err();
    match &err {
        Error::Trap(what) => assert!(what.contains("wasm `unreachable` reached"), "{what}"),
        other => panic!("expected a trap, got {other:?}"),
    }
    // What the guest wrote to stderr comes with the crash: Rust's panic
    // message and where it was raised.
    let output = err.guest_output().expect("the guest's last output");
    assert!(output.contains("panicked at"), "{output}");
    assert!(output.contains("probe asked to trap"), "{output}");
    assert_runtime_still_serves().await;
}

#[tokio::test]
async fn a_crash_carries_only_the_tail_of_what_its_own_call_printed() {
    // A secret the guest may read: it must not leave through its output either.
    let grants = Grants::none()
        .allow_socket_secret("pw")
        .unwrap()
        .secret("pw", "hunter2");
    let mut session = probe().open("{}", &grants).await.unwrap();
    // A call that prints a lot and succeeds: nothing of it is kept for later calls.
    let printed = session
        .fetch(&probe_request(
            "print",
            json!({ "text": "an earlier call", "count": 10_000 }),
        ))
        .await
        .unwrap();
    assert_eq!(data(&printed.records)[0]["printed"], 10_001);
    // The next call prints a long line ending in the secret, then crashes.
    let said = format!("{} the password is hunter2", "x".repeat(10_000));
    let err = session
        .fetch(&probe_request("trap", json!({ "text": said })))
        .await
        .unwrap_err();
    let output = err.guest_output().expect("the guest's last output");
    assert!(!output.contains("an earlier call"), "{output}");
    assert!(output.contains("xxx the password is ***\n"), "{output}");
    assert!(!output.contains("hunter2"), "{output}");
    assert!(output.contains("probe asked to trap"), "{output}");
    assert!(
        output.len() <= GUEST_OUTPUT_TAIL,
        "at most the tail: {} bytes",
        output.len()
    );
    assert!(err.to_string().contains(output), "the message shows it too");
}

#[tokio::test]
async fn a_call_blocked_in_host_io_is_stopped_by_the_wall_clock() {
    let limits = Limits {
        wall_clock_per_call: Duration::from_millis(300),
        ..Limits::default()
    };
    let mut session = probe()
        .open_with_limits("{}", &Grants::none(), &limits)
        .await
        .unwrap();
    let err = session
        .fetch(&probe_request("sleep", json!({ "ms": 30_000 })))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Timeout(limit) if limit == Duration::from_millis(300)),
        "{err:?}"
    );
    assert_runtime_still_serves().await;
}

#[tokio::test]
async fn a_session_stopped_by_a_limit_refuses_further_calls() {
    let mut session = probe()
        .open_with_limits("{}", &Grants::none(), &tight_limits())
        .await
        .unwrap();
    session
        .fetch(&probe_request("loop", json!({})))
        .await
        .unwrap_err();
    let err = session
        .fetch(&probe_request("env", json!({})))
        .await
        .unwrap_err();
    match err {
        Error::SessionPoisoned(reason) => assert!(reason.contains("CPU limit"), "{reason}"),
        other => panic!("expected a poisoned session, got {other:?}"),
    }
}

#[tokio::test]
async fn a_connector_error_leaves_the_session_usable() {
    let mut session = probe().open("{}", &Grants::none()).await.unwrap();
    let err = session
        .fetch(&probe_request("no-such-action", json!({})))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Connector(ConnectorError::NotFound(_))),
        "{err:?}"
    );
    session
        .fetch(&probe_request("env", json!({})))
        .await
        .unwrap();
}

#[tokio::test]
async fn many_hostile_sessions_at_once_do_not_disturb_a_well_behaved_one() {
    let limits = tight_limits();
    let hostile: Vec<_> = (0..4)
        .map(|i| {
            let limits = limits.clone();
            tokio::spawn(async move {
                let action = ["loop", "memory-bomb", "recursion", "trap"][i];
                let mut session = probe()
                    .open_with_limits("{}", &Grants::none(), &limits)
                    .await
                    .unwrap();
                session
                    .fetch(&probe_request(action, json!({})))
                    .await
                    .unwrap_err()
            })
        })
        .collect();
    let mut session = probe().open("{}", &Grants::none()).await.unwrap();
    for _ in 0..20 {
        session
            .fetch(&probe_request("env", json!({})))
            .await
            .unwrap();
    }
    for task in hostile {
        let err = task.await.unwrap();
        assert!(
            matches!(
                err,
                Error::CpuLimit(_) | Error::MemoryLimit { .. } | Error::Trap(_)
            ),
            "{err:?}"
        );
    }
}

#[tokio::test]
async fn holding_too_many_resources_is_stopped_by_the_resource_limit() {
    let dir = sluice_tests::tempdir();
    std::fs::write(dir.path().join("f.txt"), "x").unwrap();
    let grants = Grants::none()
        .mount(&format!("{}:/data:ro", dir.path().display()))
        .unwrap();
    let limits = Limits {
        max_resources: 40,
        ..Limits::default()
    };
    let mut session = probe()
        .open_with_limits("{}", &grants, &limits)
        .await
        .unwrap();
    let params = |count: usize| json!({ "path": "/data/f.txt", "count": count });
    let page = session
        .fetch(&probe_request("open-many", params(5)))
        .await
        .unwrap();
    assert_eq!(data(&page.records), vec![json!({ "open": 5 })]);
    let err = session
        .fetch(&probe_request("open-many", params(500)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ResourceLimit { limit: 40 }), "{err:?}");
    assert_runtime_still_serves().await;
}

#[tokio::test]
async fn passing_too_much_data_to_the_host_is_stopped_by_the_hostcall_limit() {
    let limits = Limits {
        hostcall_fuel: 1 << 20,
        ..Limits::default()
    };
    let mut session = probe()
        .open_with_limits("{}", &Grants::none(), &limits)
        .await
        .unwrap();
    session
        .fetch(&probe_request("log", json!({ "count": 1000 })))
        .await
        .unwrap();
    let err = session
        .fetch(&probe_request("log", json!({ "count": 4 << 20 })))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::HostcallLimit { limit } if limit == 1 << 20),
        "{err:?}"
    );
    assert_runtime_still_serves().await;
}

#[tokio::test]
async fn the_pooling_allocator_runs_sessions_and_contains_hostile_ones() {
    let runtime = sluice::Runtime::with_config(sluice::RuntimeConfig {
        pooling: Some(sluice::PoolingConfig {
            max_instances: 8,
            max_memory_bytes: 64 << 20,
            ..sluice::PoolingConfig::default()
        }),
        ..sluice::RuntimeConfig::default()
    })
    .unwrap();
    let connector = runtime
        .load_file(sluice_tests::guest("sluice_probe"))
        .unwrap();
    let mut bomb = connector
        .open_with_limits("{}", &Grants::none(), &tight_limits())
        .await
        .unwrap();
    let err = bomb
        .fetch(&probe_request("memory-bomb", json!({})))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::MemoryLimit { .. }), "{err:?}");
    drop(bomb);
    // More sessions than slots, one after another: slots are reused.
    for _ in 0..20 {
        let mut session = connector.open("{}", &Grants::none()).await.unwrap();
        let page = session
            .fetch(&probe_request("env", json!({})))
            .await
            .unwrap();
        assert_eq!(data(&page.records), vec![json!({})]);
    }
}

#[tokio::test]
async fn zero_limits_are_rejected() {
    let limits = Limits {
        memory_bytes: 0,
        ..Limits::default()
    };
    let err = probe()
        .open_with_limits("{}", &Grants::none(), &limits)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidConfig(ref m) if m.contains("memory_bytes")),
        "{err:?}"
    );
}

#[tokio::test]
async fn json_lines_bounds_what_one_scan_may_cost_the_host() {
    let limits = Limits {
        memory_bytes: 256 << 20,
        ..Limits::default()
    };
    let mut session = probe()
        .open_with_limits("{}", &Grants::none(), &limits)
        .await
        .unwrap();
    let mut scan = async |params| {
        session
            .fetch(&probe_request("json-lines", params))
            .await
            .map(|page| data(&page.records).remove(0))
    };
    // One byte over the chunk's bound, and one field over the list's.
    for (params, says) in [
        (
            json!({"text": "x", "count": (64 << 20) + 1}),
            "at most 64 MiB",
        ),
        (
            json!({"text": "{}\n", "count": 1, "batch": 65}),
            "at most 64 fields",
        ),
    ] {
        match scan(params).await {
            Err(Error::Connector(ConnectorError::InvalidRequest(m))) => {
                assert!(m.contains(says), "{m}")
            }
            other => panic!("expected invalid-request saying {says:?}, got {other:?}"),
        }
    }
    // A line nested 400,000 deep, 2 MiB long (past what is scanned on the
    // calling thread): checked without recursing, so no host stack is at
    // risk, and malformed (it never closes).
    let deep = scan(json!({"text": "{\"a\":", "count": 400_000}))
        .await
        .unwrap();
    assert_eq!(deep["found"], 0);
    assert_eq!(deep["malformed"]["line"], 0);
    assert!(
        deep["malformed"]["message"]
            .as_str()
            .unwrap()
            .starts_with("EOF while parsing a value at line 1 column 2000000"),
        "{deep}"
    );
    // A million lines in one chunk are each checked and found.
    let many = scan(json!({"text": "{\"f0\": 1}\n", "count": 1 << 20, "batch": 1}))
        .await
        .unwrap();
    assert_eq!(
        (&many["found"], &many["lines"], &many["consumed"]),
        (&json!(1 << 20), &json!(1 << 20), &json!(10 << 20))
    );
    assert_eq!(many["malformed"], json!(null));
    assert_runtime_still_serves().await;
}

//! `GrantsConfig::within`, case by case.

use super::*;

fn ceiling(json: serde_json::Value) -> Ceiling {
    serde_json::from_value(json).unwrap()
}

fn grants(json: serde_json::Value) -> GrantsConfig {
    serde_json::from_value(json).unwrap()
}

fn fits(grants_json: serde_json::Value, ceiling_json: serde_json::Value) -> Result<(), String> {
    grants(grants_json)
        .within(&ceiling(ceiling_json))
        .map_err(|o| format!("{}: {}", o.capability, o.entry))
}

#[test]
fn an_exact_origin_fits_only_itself() {
    let c = serde_json::json!({ "http": ["https://api.example.com"] });
    assert_eq!(
        fits(
            serde_json::json!({ "http": { "origins": ["https://API.example.com/"] } }),
            c.clone()
        ),
        Ok(())
    );
    assert_eq!(
        fits(
            serde_json::json!({ "http": { "origins": ["https://api.example.com:8443"] } }),
            c.clone()
        ),
        Err("http: https://api.example.com:8443".into())
    );
    assert_eq!(
        fits(
            serde_json::json!({ "http": { "origins": ["http://api.example.com"] } }),
            c
        ),
        Err("http: http://api.example.com".into())
    );
}

#[test]
fn a_wildcard_origin_admits_its_subdomains_but_not_the_apex() {
    let c = serde_json::json!({ "http": ["https://*.example.com"] });
    for inside in [
        "https://a.example.com",
        "https://a.b.example.com",
        "https://*.b.example.com",
    ] {
        assert_eq!(
            fits(
                serde_json::json!({ "http": { "origins": [inside] } }),
                c.clone()
            ),
            Ok(()),
            "{inside}"
        );
    }
    for beyond in [
        "https://example.com",
        "https://evilexample.com",
        "https://*.com",
    ] {
        assert!(
            fits(
                serde_json::json!({ "http": { "origins": [beyond] } }),
                c.clone()
            )
            .is_err(),
            "{beyond}"
        );
    }
}

#[test]
fn private_addresses_need_the_ceiling_flag() {
    let g = serde_json::json!({ "http": { "origins": ["https://a.test"], "allow_private_addresses": true } });
    assert_eq!(
        fits(g.clone(), serde_json::json!({ "http": ["https://a.test"] })),
        Err("http: allow_private_addresses".into())
    );
    assert_eq!(
        fits(
            g,
            serde_json::json!({ "http": ["https://a.test"], "http_private_addresses": true })
        ),
        Ok(())
    );
}

#[test]
fn a_tcp_port_must_match_unless_the_ceiling_allows_any() {
    let c = serde_json::json!({ "tcp": ["db.internal:5432", "cache.internal:*"] });
    assert_eq!(
        fits(
            serde_json::json!({ "sockets": { "tcp": ["DB.internal:5432"] } }),
            c.clone()
        ),
        Ok(())
    );
    assert_eq!(
        fits(
            serde_json::json!({ "sockets": { "tcp": ["cache.internal:6379"] } }),
            c.clone()
        ),
        Ok(())
    );
    assert_eq!(
        fits(
            serde_json::json!({ "sockets": { "tcp": ["db.internal:5433"] } }),
            c.clone()
        ),
        Err("tcp: db.internal:5433".into())
    );
    assert_eq!(
        fits(
            serde_json::json!({ "sockets": { "tcp": ["db.internal:*"] } }),
            c
        ),
        Err("tcp: db.internal:*".into())
    );
}

#[test]
fn a_port_range_fits_only_inside_the_ceilings_range() {
    let c = serde_json::json!({ "tcp": ["ftp.internal:30000-30009"] });
    let grant = |entry: &str| serde_json::json!({ "sockets": { "tcp": [entry] } });
    assert_eq!(fits(grant("ftp.internal:30000-30009"), c.clone()), Ok(()));
    assert_eq!(fits(grant("ftp.internal:30002-30003"), c.clone()), Ok(()));
    assert_eq!(fits(grant("ftp.internal:30005"), c.clone()), Ok(()));
    assert_eq!(
        fits(grant("ftp.internal:29999-30001"), c.clone()),
        Err("tcp: ftp.internal:29999-30001".into())
    );
    assert_eq!(
        fits(grant("ftp.internal:30009-30010"), c.clone()),
        Err("tcp: ftp.internal:30009-30010".into())
    );
    assert_eq!(
        fits(grant("ftp.internal:*"), c),
        Err("tcp: ftp.internal:*".into())
    );
}

#[test]
fn an_ipv4_mapped_address_is_its_ipv4_address() {
    let c = serde_json::json!({ "tcp": ["10.0.0.1:443"] });
    assert_eq!(
        fits(
            serde_json::json!({ "sockets": { "tcp": ["[::ffff:10.0.0.1]:443"] } }),
            c.clone()
        ),
        Ok(())
    );
    assert!(fits(
        serde_json::json!({ "sockets": { "tcp": ["[::ffff:10.0.0.2]:443"] } }),
        c
    )
    .is_err());
    let mapped = serde_json::json!({ "tcp": ["::ffff:10.0.0.0/104:443"] });
    assert_eq!(
        fits(
            serde_json::json!({ "sockets": { "tcp": ["10.1.2.3:443"] } }),
            mapped
        ),
        Ok(())
    );
}

#[test]
fn a_cidr_admits_addresses_and_smaller_networks_inside_it_but_no_names() {
    let c = serde_json::json!({ "tcp": ["10.0.0.0/8:443"] });
    for inside in ["10.1.2.3:443", "10.2.0.0/16:443", "10.0.0.0/8:443"] {
        assert_eq!(
            fits(
                serde_json::json!({ "sockets": { "tcp": [inside] } }),
                c.clone()
            ),
            Ok(()),
            "{inside}"
        );
    }
    for beyond in [
        "11.0.0.1:443",
        "0.0.0.0/0:443",
        "10.1.2.3:80",
        "localhost:443",
    ] {
        assert!(
            fits(
                serde_json::json!({ "sockets": { "tcp": [beyond] } }),
                c.clone()
            )
            .is_err(),
            "{beyond}"
        );
    }
}

#[test]
fn udp_and_dns_are_never_within_a_ceiling() {
    let c = serde_json::json!({ "tcp": ["10.0.0.0/8:*"] });
    assert_eq!(
        fits(
            serde_json::json!({ "sockets": { "udp": ["10.0.0.1:53"] } }),
            c.clone()
        ),
        Err("udp: sockets.udp".into())
    );
    assert_eq!(
        fits(serde_json::json!({ "sockets": { "dns": true } }), c),
        Err("dns: sockets.dns".into())
    );
}

#[test]
fn mounts_need_the_files_flag_and_a_plain_relative_path() {
    let m = |host: &str| serde_json::json!({ "files": [{ "host": host, "guest": "/data" }] });
    assert_eq!(
        fits(m("data/in"), serde_json::json!({ "files": true })),
        Ok(())
    );
    assert_eq!(
        fits(m("data/in"), serde_json::json!({})),
        Err("files: data/in".into())
    );
    assert_eq!(
        fits(m("../other"), serde_json::json!({ "files": true })),
        Err("files: ../other".into())
    );
    assert_eq!(
        fits(m("/etc"), serde_json::json!({ "files": true })),
        Err("files: /etc".into())
    );
}

#[test]
fn a_sql_host_admits_any_database_on_it_and_its_port_if_given() {
    let sql = |url: &str| serde_json::json!({ "sql": [{ "name": "db", "url": url, "mode": "read-write" }] });
    let c = serde_json::json!({ "sql_hosts": ["db.internal", "[::1]:5433"] });
    assert_eq!(
        fits(sql("postgres://any@DB.internal:6000/x"), c.clone()),
        Ok(())
    );
    assert_eq!(fits(sql("postgres://any@[::1]:5433/x"), c.clone()), Ok(()));
    assert_eq!(
        fits(sql("postgres://any@[::1]:5432/x"), c.clone()),
        Err("sql: any@[::1]:5432/x (read-write)".into())
    );
    assert!(fits(sql("postgres://any@other.internal/x"), c).is_err());
}

#[test]
fn a_sql_target_admits_its_databases_roles_and_modes_only() {
    let sql = |url: &str, mode: &str| serde_json::json!({ "sql": [{ "name": "db", "url": url, "mode": mode }] });
    let c =
        serde_json::json!({ "sql": [{ "host": "db", "databases": ["app"], "roles": ["reader"] }] });
    assert_eq!(
        fits(sql("postgres://reader@db/app", "read-only"), c.clone()),
        Ok(())
    );
    assert_eq!(
        fits(sql("postgres://reader@db/app", "read-write"), c.clone()),
        Err("sql: reader@db:5432/app (read-write)".into())
    );
    assert!(fits(sql("postgres://writer@db/app", "read-only"), c.clone()).is_err());
    assert!(fits(sql("postgres://reader@db/other", "read-only"), c.clone()).is_err());
    assert!(fits(sql("postgres://reader@db:5433/app", "read-only"), c).is_err());
}

#[test]
fn an_entry_that_can_match_nothing_is_refused_when_read() {
    for (field, entry) in [
        ("http", serde_json::json!(["api.example.com"])),
        ("tcp", serde_json::json!(["10.0.0.1"])),
        ("tcp", serde_json::json!(["10.0.0.1:0"])),
        ("tcp", serde_json::json!(["::1:80"])),
        ("sql_hosts", serde_json::json!(["::1:5432"])),
        ("sql_hosts", serde_json::json!(["db:0"])),
        ("sql_hosts", serde_json::json!(["user@db"])),
        (
            "sql",
            serde_json::json!([{ "host": "db", "databases": [], "roles": ["r"] }]),
        ),
        (
            "sql",
            serde_json::json!([{ "host": "", "databases": ["d"], "roles": ["r"] }]),
        ),
    ] {
        let json = serde_json::json!({ field: entry });
        assert!(
            serde_json::from_value::<Ceiling>(json.clone()).is_err(),
            "{json}"
        );
    }
}

#[test]
fn a_ceiling_round_trips_through_json() {
    let json = serde_json::json!({
        "http": ["https://*.example.com"], "http_private_addresses": false,
        "tcp": ["10.0.0.0/8:443", "db:*"], "sql_hosts": ["db", "[::1]:5432"],
        "sql": [{ "host": "db", "port": 5432, "databases": ["*"], "roles": ["r"], "mode": "read-only" }],
        "sql_privileged_roles": false, "sftp": ["files.example.com:22"], "files": true
    });
    let read = ceiling(json.clone());
    assert_eq!(serde_json::to_value(&read).unwrap(), json);
}

#[test]
fn an_sftp_grant_fits_only_a_server_of_the_ceilings_sftp_entries() {
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAID3PXBqtXbKQxJkKvDeXTnLGtYM4pkOHDRzU5xNl3qbv";
    let grant = |url: &str| serde_json::json!({ "sftp": [{ "name": "drop", "url": url, "known_hosts": key, "key_secret": "k" }] });
    let c = serde_json::json!({ "sftp": ["files.internal:22", "10.1.0.0/16:2222"], "tcp": ["other.internal:22"] });
    assert_eq!(
        fits(grant("sftp://etl@Files.Internal/upload"), c.clone()),
        Ok(())
    );
    assert_eq!(fits(grant("sftp://etl@10.1.2.3:2222/"), c.clone()), Ok(()));
    assert_eq!(
        fits(grant("sftp://etl@files.internal:2222/upload"), c.clone()),
        Err("sftp: sftp://etl@files.internal:2222/upload".into())
    );
    // A tcp entry admits the guest's own sockets, not the host's SSH client.
    assert_eq!(
        fits(grant("sftp://etl@other.internal/"), c),
        Err("sftp: sftp://etl@other.internal:22".into())
    );
    assert_eq!(
        fits(grant("sftp://etl@files.internal/"), serde_json::json!({})),
        Err("sftp: sftp://etl@files.internal:22".into())
    );
}

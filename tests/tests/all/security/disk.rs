//! A full disk while the server writes a component, a record or an
//! artifact: a clean 5xx, the old versions intact, and the server going on.
//! Needs a small tmpfs, which the test mounts itself (as root); where it
//! cannot, it says so and checks nothing.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use sluice_tests::client::api;
use sluice_tests::tempdir;

use super::start_with;
use crate::server::{new_instance, tenant, upload};

/// A tmpfs of `mib` MiB mounted on a fresh directory, unmounted when dropped.
struct SmallDisk {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(mib: u32) -> Result<Self, String> {
        let dir = tempdir();
        let path = dir.path().join("disk");
        std::fs::create_dir(&path).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Self { path, _dir: dir })
    }

    /// Fill what is left, keeping the filler's path.
    fn fill(&self) -> PathBuf {
        let filler = self.path.join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 4096];
        while file.write_all(&chunk).is_ok() {}
        let _ = file.sync_all();
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

fn text(reply: &sluice_tests::client::Reply) -> String {
    String::from_utf8_lossy(&reply.body).into_owned()
}

#[tokio::test]
async fn a_full_disk_answers_5xx_and_keeps_the_old_versions() {
    let disk = match SmallDisk::mount(8) {
        Ok(disk) => disk,
        Err(why) => {
            eprintln!("SKIPPED a_full_disk_answers_5xx_and_keeps_the_old_versions: cannot mount a tmpfs here ({why}); run the tests as root to check disk-full handling");
            return;
        }
    };
    let data: &Path = &disk.path;
    let (addr, _server) = start_with(data, |_| {}).await;
    let (_, token) = tenant(addr, json!({ "name": "t" })).await;
    let connector = upload(addr, &token, "sluice_probe").await;
    let instance = new_instance(
        addr,
        &token,
        &json!({ "connector": connector, "config": { "v": 1 } }),
    )
    .await;

    let filler = disk.fill();
    // A new record does not fit: 5xx, and the old one is still whole.
    let path = format!("/v1/instances/{instance}");
    let big = json!({ "connector": connector, "config": { "v": 2, "pad": "x".repeat(64 << 10) } });
    let reply = api(addr, Some(&token)).put_json(&path, &big).await;
    assert!(reply.status >= 500, "{}: {}", reply.status, text(&reply));
    assert!(reply.json()["error"]["code"].is_string());
    let kept = api(addr, Some(&token)).get(&path).await;
    assert_eq!(kept.json()["config"], json!({ "v": 1 }));
    // A new component does not fit either: nothing half-stored is listed.
    let mut variant = std::fs::read(sluice_tests::guest("sluice_probe")).unwrap();
    variant.extend_from_slice(&[0, 3, 2, b'v', b'2']);
    let reply = api(addr, Some(&token))
        .post("/v1/connectors", variant.clone())
        .await;
    assert!(reply.status >= 500, "{}: {}", reply.status, text(&reply));
    let listed = api(addr, Some(&token)).get("/v1/connectors").await;
    assert_eq!(listed.json()["items"].as_array().unwrap().len(), 1);
    // The old instance still runs, and the server answers.
    let fetch = api(addr, Some(&token))
        .post(&format!("{path}/fetch"), br#"{"resource": "env"}"#.to_vec())
        .await;
    assert_eq!(fetch.status, 200, "{}", text(&fetch));
    assert_eq!(api(addr, None).get("/healthz").await.status, 200);

    // With room again, the same writes succeed.
    std::fs::remove_file(filler).unwrap();
    let reply = api(addr, Some(&token)).put_json(&path, &big).await;
    assert_eq!(reply.status, 200, "{}", text(&reply));
    let reply = api(addr, Some(&token))
        .post("/v1/connectors", variant)
        .await;
    assert_eq!(reply.status, 201, "{}", text(&reply));
}

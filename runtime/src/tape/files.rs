//! Files on tape, at `wasi:filesystem`'s `open-at`, `read-directory` and
//! `get-directories`, which the runtime's linker shadows with these
//! wrappers (a session without a tape goes straight through).
//!
//! Recording writes each path the connector opens, with the answer and —
//! for a file opened to read — its contents then, and each directory it
//! lists. A replay lays those out again in a temporary directory mounted
//! where the recorded mounts were, and compares each path opened with the
//! one recorded next.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use base64::Engine as _;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystemView};
use wasmtime_wasi::p2::bindings::filesystem::preopens::Host as _;
use wasmtime_wasi::p2::bindings::filesystem::types::{
    DescriptorFlags, ErrorCode, HostDescriptor, OpenFlags, PathFlags,
};

use super::event::{DirEntry, Event, RecordedMount};
use super::Tape;
use crate::error::Error;
use crate::state::HostState;

/// The interfaces shadowed, as wasmtime-wasi names them.
const TYPES: &str = "wasi:filesystem/types@0.2.12";
const PREOPENS: &str = "wasi:filesystem/preopens@0.2.12";

/// A file larger than this is recorded without its contents.
const MAX_RECORDED_FILE: u64 = 256 << 20;

/// The preopened directories and their guest paths, as `get-directories` returns them.
type Preopens = Vec<(Resource<Descriptor>, String)>;

/// The guest path of each descriptor the connector holds (by resource
/// number), while a tape runs.
#[derive(Debug, Default)]
pub(crate) struct OpenedPaths(HashMap<u32, String>);

/// Shadow `open-at`, `read-directory` and `get-directories` in `linker`.
pub(crate) fn shadow(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker.instance(PREOPENS)?.func_wrap(
        "get-directories",
        |mut store, (): ()| -> wasmtime::Result<(Preopens,)> {
            let state = store.data_mut();
            let dirs = state.filesystem().get_directories()?;
            if state.tape.is_some() {
                for (fd, path) in &dirs {
                    state.opened.0.insert(fd.rep(), path.clone());
                }
            }
            Ok((dirs,))
        },
    )?;
    let mut types = linker.instance(TYPES)?;
    types.func_wrap_async(
        "[method]descriptor.open-at",
        |mut store,
         (fd, path_flags, path, open_flags, flags): (
            Resource<Descriptor>,
            PathFlags,
            String,
            OpenFlags,
            DescriptorFlags,
        )| {
            Box::new(async move {
                let state = store.data_mut();
                Ok((open_at(state, fd, path_flags, path, open_flags, flags).await?,))
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.read-directory",
        |mut store, (fd,): (Resource<Descriptor>,)| {
            Box::new(async move {
                let state = store.data_mut();
                let listed = list(state, &fd);
                let result = HostDescriptor::read_directory(&mut state.filesystem(), fd).await;
                if let Some(event) = listed {
                    if let Some(Tape::Record(recorder)) = &state.tape {
                        recorder.write(event);
                    }
                }
                Ok((fs_result(result)?,))
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// A wasmtime-wasi filesystem result as the guest receives it (a trap stays a trap).
fn fs_result<T>(result: wasmtime_wasi::p2::FsResult<T>) -> wasmtime::Result<Result<T, ErrorCode>> {
    match result {
        Ok(value) => Ok(Ok(value)),
        Err(error) => Ok(Err(error.downcast()?)),
    }
}

async fn open_at(
    state: &mut HostState,
    fd: Resource<Descriptor>,
    path_flags: PathFlags,
    path: String,
    open_flags: OpenFlags,
    flags: DescriptorFlags,
) -> wasmtime::Result<Result<Resource<Descriptor>, ErrorCode>> {
    let open = async |state: &mut HostState, fd: Resource<Descriptor>, path: String| {
        fs_result(
            HostDescriptor::open_at(
                &mut state.filesystem(),
                fd,
                path_flags,
                path,
                open_flags,
                flags,
            )
            .await,
        )
    };
    let Some(tape) = state.tape.clone() else {
        return open(state, fd, path).await;
    };
    let full = guest_path(state.opened.0.get(&fd.rep()).map(String::as_str), &path);
    if let Tape::Replay(player) = &tape {
        let recorded = player.next_open();
        match recorded {
            Some(recorded) if recorded.path == full => {
                player.matched();
                if recorded.answer != "ok" {
                    return Ok(Err(code_of(&recorded.answer)));
                }
            }
            other => {
                player.diverge(match other {
                    Some(recorded) => format!(
                        "the connector opened `{full}`; the recording has `{}` next",
                        recorded.path
                    ),
                    None => format!(
                        "the connector opened `{full}`, and the recorded run opened no more files"
                    ),
                });
                return Ok(Err(ErrorCode::Access));
            }
        }
    }
    let result = open(state, fd, path).await?;
    if let Ok(opened) = &result {
        state.opened.0.insert(opened.rep(), full.clone());
    }
    if let Tape::Record(recorder) = &tape {
        let event = match &result {
            Err(code) => Event::FileOpen {
                path: full,
                answer: name_of(*code).to_string(),
                directory: None,
                contents: None,
            },
            Ok(opened) => {
                let descriptor = state.table.get(opened)?;
                let contents = match descriptor {
                    Descriptor::File(file) if flags.contains(DescriptorFlags::READ) => {
                        read_whole(&file.file).filter(|bytes| recorder.first_contents(&full, bytes))
                    }
                    _ => None,
                };
                Event::FileOpen {
                    path: full,
                    answer: "ok".into(),
                    directory: Some(matches!(descriptor, Descriptor::Dir(_))),
                    contents: contents.map(|bytes| {
                        base64::engine::general_purpose::STANDARD
                            .encode(recorder.redactor().bytes(&bytes))
                    }),
                }
            }
        };
        recorder.write(event);
    }
    Ok(result)
}

/// A file's contents from its start, without moving its cursor; `None`
/// when it cannot be read or is too large to record.
fn read_whole(file: &std::fs::File) -> Option<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let size = file.metadata().ok()?.len();
    if size > MAX_RECORDED_FILE {
        return None;
    }
    let mut bytes = Vec::with_capacity(size as usize);
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = file.read_at(&mut buf, bytes.len() as u64).ok()?;
        if n == 0 || bytes.len() as u64 + n as u64 > MAX_RECORDED_FILE {
            break;
        }
        bytes.extend_from_slice(&buf[..n]);
    }
    Some(bytes)
}

/// The listing of directory `fd`, when recording.
fn list(state: &HostState, fd: &Resource<Descriptor>) -> Option<Event> {
    state.tape.as_ref()?.recorder()?;
    let path = state.opened.0.get(&fd.rep())?.clone();
    let Descriptor::Dir(dir) = state.table.get(fd).ok()? else {
        return None;
    };
    let dir = cap_std::fs::Dir::from_std_file(dir.dir.try_clone().ok()?);
    let mut entries: Vec<DirEntry> = dir
        .entries()
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let meta = entry.metadata().ok()?;
            Some(DirEntry {
                name: entry.file_name().into_string().ok()?,
                directory: meta.is_dir(),
                size: meta.len(),
            })
        })
        .collect();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Some(Event::DirList { path, entries })
}

/// `path` opened from the directory at `parent`, as one absolute guest path.
fn guest_path(parent: Option<&str>, path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    let base = if path.starts_with('/') {
        ""
    } else {
        parent.unwrap_or("")
    };
    for part in base.split('/').chain(path.split('/')) {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The WASI names of the error codes a file open answers with.
const CODES: &[(ErrorCode, &str)] = &[
    (ErrorCode::Access, "access"),
    (ErrorCode::NoEntry, "no-entry"),
    (ErrorCode::NotDirectory, "not-directory"),
    (ErrorCode::IsDirectory, "is-directory"),
    (ErrorCode::NotPermitted, "not-permitted"),
    (ErrorCode::Exist, "exist"),
    (ErrorCode::ReadOnly, "read-only"),
    (ErrorCode::Invalid, "invalid"),
    (ErrorCode::Loop, "loop"),
    (ErrorCode::NameTooLong, "name-too-long"),
    (ErrorCode::BadDescriptor, "bad-descriptor"),
    (ErrorCode::Unsupported, "unsupported"),
];

fn name_of(code: ErrorCode) -> &'static str {
    CODES
        .iter()
        .find(|(c, _)| *c == code)
        .map_or("io", |(_, name)| name)
}

fn code_of(name: &str) -> ErrorCode {
    CODES
        .iter()
        .find(|(_, n)| *n == name)
        .map_or(ErrorCode::Io, |(code, _)| *code)
}

/// Where mount `index` of a replay's files lives under `root`.
pub(crate) fn mount_dir(root: &Path, index: usize) -> PathBuf {
    root.join(format!("mount-{index}"))
}

/// The recorded files laid out under a fresh temporary directory, one
/// directory per mount; `None` when the run had no mounts. A path in the
/// recording that would leave its mount is refused (a recording is input).
pub(crate) fn lay_out(
    mounts: &[RecordedMount],
    contents: &[(String, Vec<u8>)],
    listings: &[(String, Vec<DirEntry>)],
) -> Result<Option<PathBuf>, Error> {
    if mounts.is_empty() {
        return Ok(None);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let root = std::env::temp_dir().join(format!("sluice-replay-{}-{nanos}", std::process::id()));
    // Made here and now, readable by this user alone: never a directory
    // (or a link) someone else put there.
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&root)
            .map_err(io(&root))?;
    }
    let laid = lay_out_in(&root, mounts, contents, listings);
    if laid.is_err() {
        let _ = std::fs::remove_dir_all(&root);
    }
    laid.map(|()| Some(root))
}

fn lay_out_in(
    root: &Path,
    mounts: &[RecordedMount],
    contents: &[(String, Vec<u8>)],
    listings: &[(String, Vec<DirEntry>)],
) -> Result<(), Error> {
    for index in 0..mounts.len() {
        let dir = mount_dir(root, index);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    }
    let place = |path: &str| -> Result<Option<PathBuf>, Error> {
        let Some((index, mount)) = mounts
            .iter()
            .enumerate()
            .filter(|(_, m)| within(path, &m.guest))
            .max_by_key(|(_, m)| m.guest.len())
        else {
            return Ok(None);
        };
        let relative = path[mount.guest.len()..].trim_start_matches('/');
        let relative = Path::new(relative);
        if !relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(Error::Recording(format!(
                "the path `{path}` leaves its mount `{}`",
                mount.guest
            )));
        }
        Ok(Some(mount_dir(root, index).join(relative)))
    };
    for (path, entries) in listings {
        let Some(dir) = place(path)? else { continue };
        for entry in entries {
            let Some(at) = place(&format!("{}/{}", path.trim_end_matches('/'), entry.name))? else {
                continue;
            };
            if entry.directory {
                std::fs::create_dir_all(&at).map_err(io(&at))?;
            } else if !at.exists() {
                std::fs::create_dir_all(&dir).map_err(io(&dir))?;
                let file = std::fs::File::create(&at).map_err(io(&at))?;
                file.set_len(entry.size).map_err(io(&at))?;
            }
        }
    }
    for (path, bytes) in contents {
        let Some(at) = place(path)? else { continue };
        if let Some(parent) = at.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&at, bytes).map_err(io(&at))?;
    }
    Ok(())
}

/// The error of an I/O failure at `path`.
fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.display().to_string();
    move |source| Error::Io { path, source }
}

/// Whether `path` is `mount` or beneath it.
fn within(path: &str, mount: &str) -> bool {
    let mount = mount.trim_end_matches('/');
    path == mount || path.starts_with(&format!("{mount}/")) || mount.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_paths_are_absolute_and_normal() {
        assert_eq!(
            guest_path(Some("/data"), "a/./b/../c.json"),
            "/data/a/c.json"
        );
        assert_eq!(guest_path(Some("/data/"), "x"), "/data/x");
        assert_eq!(guest_path(None, "x"), "/x");
    }

    #[test]
    fn error_codes_read_back_as_themselves() {
        for (code, _) in CODES {
            assert_eq!(code_of(name_of(*code)), *code);
        }
        assert_eq!(code_of("something-else"), ErrorCode::Io);
    }

    #[test]
    fn a_recorded_path_cannot_leave_its_mount() {
        let mounts = [RecordedMount {
            guest: "/data".into(),
            writable: false,
        }];
        let escape = [("/data/../../etc/owned".to_string(), b"x".to_vec())];
        assert!(matches!(
            lay_out(&mounts, &escape, &[]),
            Err(Error::Recording(why)) if why.contains("leaves its mount")
        ));
        let fine = [("/data/sub/a.txt".to_string(), b"hello".to_vec())];
        let listing = [(
            "/data".to_string(),
            vec![DirEntry {
                name: "big.bin".into(),
                directory: false,
                size: 4096,
            }],
        )];
        let root = lay_out(&mounts, &fine, &listing).unwrap().unwrap();
        let dir = mount_dir(&root, 0);
        assert_eq!(std::fs::read(dir.join("sub/a.txt")).unwrap(), b"hello");
        assert_eq!(std::fs::metadata(dir.join("big.bin")).unwrap().len(), 4096);
        std::fs::remove_dir_all(root).unwrap();
    }
}

//! Files in the directories the host mounted.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use sluice_sdk::{io_error, Result};

use crate::format::{past_end, read_exactly, read_up_to, Source};

/// One file in a mount.
#[derive(Debug, Clone)]
pub struct LocalFile {
    path: String,
}

impl LocalFile {
    /// The file at `path` (it is opened on each read).
    pub fn new(path: String) -> Self {
        Self { path }
    }
}

impl Source for LocalFile {
    fn name(&self) -> &str {
        &self.path
    }

    fn head(&self, len: usize) -> Result<Vec<u8>> {
        let mut head = vec![0; len];
        let n = File::open(&self.path)
            .and_then(|mut f| read_up_to(&mut f, &mut head))
            .map_err(|e| io_error(&self.path, e))?;
        head.truncate(n);
        Ok(head)
    }

    fn open_at(&self, offset: u64) -> Result<Box<dyn Read>> {
        let fail = |e| io_error(&self.path, e);
        let mut file = File::open(&self.path).map_err(fail)?;
        if offset > 0 {
            let size = file.metadata().map_err(fail)?.len();
            if offset > size {
                return Err(past_end(&self.path, offset, size));
            }
            file.seek(SeekFrom::Start(offset)).map_err(fail)?;
        }
        Ok(Box::new(file))
    }

    fn size(&self) -> Result<u64> {
        std::fs::metadata(&self.path)
            .map(|m| m.len())
            .map_err(|e| io_error(&self.path, e))
    }

    fn read_range(&self, offset: u64, len: u64) -> Result<Vec<u8>> {
        read_exactly(&self.path, self.open_at(offset)?, offset, len)
    }

    fn clone_box(&self) -> Box<dyn Source> {
        Box::new(self.clone())
    }
}

/// Every file under `dir`, recursively, into `found`.
pub fn collect_files(dir: &str, found: &mut Vec<String>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| io_error(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        let path = format!(
            "{}/{}",
            dir.trim_end_matches('/'),
            entry.file_name().to_string_lossy()
        );
        let kind = entry.file_type().map_err(|e| io_error(&path, e))?;
        if kind.is_dir() {
            collect_files(&path, found)?;
        } else if kind.is_file() {
            found.push(path);
        }
    }
    Ok(())
}

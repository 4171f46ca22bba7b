//! Durable writes: a file or a folder appears whole under its name, or not at all.
//!
//! Every output softalign writes in one piece (checkpoints, exported models and adapters,
//! `config.toml`, JSON and Markdown reports, PNG figures) goes through this crate, so there is one
//! way to do it:
//!
//! 1. the content is written under a **temporary name** beside the target, in the same folder
//!    (so the rename below stays on one file system): the target's name, hidden by a leading dot,
//!    with `.partial-PID` before its extension — `config.toml` is written as
//!    `.config.partial-4242.toml`, the folder `step-00000006` as `.step-00000006.partial-4242`.
//!    The extension is kept because some writers (the PNG encoder) choose the format by it; the
//!    process id keeps two processes writing the same target off each other's temporaries;
//! 2. the file (or every file of the folder, and the folder) is **synced** to the disk;
//! 3. it is **renamed** over the target — a folder that exists already is first moved aside to
//!    `.NAME.old-PID`, then removed — and the parent folder is synced, so the rename itself
//!    survives a power cut.
//!
//! A write that fails (a full disk, a failing closure) removes its temporary before the error is
//! returned. A process killed in the middle leaves at most a temporary, which no reader takes for
//! the target (its name differs) and which [`remove_temporaries`] clears: the owner of a folder
//! (a run holding its folder's lock) calls it.
//!
//! Files that grow while a program runs (metrics, resumable label output) are appended to, not
//! written through here; [`rename_durable`] publishes such a file under its final name once it is
//! complete.
//!
//! ```
//! # let dir = std::env::temp_dir().join(format!("softalign-durable-doc-{}", std::process::id()));
//! let path = dir.join("report.json");
//! softalign_durable::write_file_atomic(&path, b"{}\n")?;
//! assert_eq!(std::fs::read(&path)?, b"{}\n");
//!
//! let model = dir.join("model");
//! softalign_durable::replace_dir_atomic(&model, |tmp| {
//!     std::fs::write(tmp.join("config.json"), "{}")
//!         .map_err(softalign_durable::WriteError::at(tmp))
//! })?;
//! assert!(model.join("config.json").is_file());
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// A durable write that failed: the path it concerns and what the system reported.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {cause}")]
pub struct WriteError {
    /// The target being written (or, for a closure's own I/O, the path it names).
    pub path: PathBuf,
    /// The underlying error.
    pub cause: io::Error,
}

impl WriteError {
    /// Maps an I/O error to a [`WriteError`] naming `path`, for `map_err`.
    pub fn at(path: &Path) -> impl FnOnce(io::Error) -> WriteError + '_ {
        move |cause| WriteError {
            path: path.to_path_buf(),
            cause,
        }
    }
}

/// The marker of a temporary being written.
const PARTIAL: &str = "partial";
/// The marker of a folder moved aside while its replacement is renamed in.
const OLD: &str = "old";

/// The temporary name under which `target` is written by this process:
/// `.STEM.partial-PID.EXT` beside it (`.NAME.partial-PID` when the name has no extension).
pub fn temporary_path(target: &Path) -> PathBuf {
    sibling(target, PARTIAL)
}

/// `target`'s sibling `.STEM.KIND-PID.EXT`.
fn sibling(target: &Path, kind: &str) -> PathBuf {
    let pid = std::process::id();
    let stem = target
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    let name = match target.extension() {
        Some(extension) => format!(".{stem}.{kind}-{pid}.{}", extension.to_string_lossy()),
        None => format!(".{stem}.{kind}-{pid}"),
    };
    target.with_file_name(name)
}

/// Whether the file name `name` is a temporary of this crate (of any process): a name that
/// starts with a dot and holds `.partial-PID` or `.old-PID`, followed by the end or an extension.
pub fn is_temporary(name: &OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    let Some(rest) = name.strip_prefix('.') else {
        return false;
    };
    [PARTIAL, OLD].iter().any(|kind| {
        let marker = format!(".{kind}-");
        rest.match_indices(&marker).any(|(at, _)| {
            let after = &rest[at + marker.len()..];
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            digits > 0 && (after.len() == digits || after[digits..].starts_with('.'))
        })
    })
}

/// The folder holding `path` (`.` for a bare file name).
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Syncs the folder `dir` itself (its entries: names created, renamed or removed). Folders
/// cannot be opened for syncing on every system; where they cannot, this does nothing.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Syncs every file under `dir`, each folder under it, and `dir`.
fn sync_tree(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            sync_tree(&entry.path())?;
        } else {
            File::open(entry.path())?.sync_all()?;
        }
    }
    sync_dir(dir)
}

/// Writes `bytes` to the file `path` durably: whole or not at all (see the crate's
/// documentation). Missing parent folders are created.
pub fn write_file_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    write_file_atomic_with(path, |tmp| {
        std::fs::write(tmp, bytes).map_err(WriteError::at(path))
    })
}

/// Has `write` create the file at the temporary path it is given (for writers that open the
/// file themselves, like an image encoder), then syncs and renames it over `path`. When `write`
/// fails, or the file cannot be synced or renamed, the temporary is removed and the error
/// returned. Missing parent folders are created.
pub fn write_file_atomic_with<T, E: From<WriteError>>(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<T, E>,
) -> Result<T, E> {
    std::fs::create_dir_all(parent(path)).map_err(WriteError::at(parent(path)))?;
    let tmp = temporary_path(path);
    let written = write(&tmp).and_then(|value| {
        publish_file(&tmp, path).map_err(WriteError::at(path))?;
        Ok(value)
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Syncs the complete file `tmp`, renames it to `path` and syncs their folder.
fn publish_file(tmp: &Path, path: &Path) -> io::Result<()> {
    File::open(tmp)?.sync_all()?;
    std::fs::rename(tmp, path)?;
    sync_dir(parent(path))
}

/// Replaces the folder `dir` durably by one that `fill` writes: `fill` is given an empty
/// temporary folder beside `dir`; once it returns, every file in it is synced and it is renamed
/// to `dir` (an existing `dir` is moved aside for the moment of the swap, then removed). When
/// `fill` fails, or syncing or renaming does, the temporary folder is removed and the error
/// returned; an existing `dir` is then left as it was. Missing parent folders are created.
pub fn replace_dir_atomic<T, E: From<WriteError>>(
    dir: &Path,
    fill: impl FnOnce(&Path) -> Result<T, E>,
) -> Result<T, E> {
    let tmp = temporary_path(dir);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(WriteError::at(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(WriteError::at(dir))?;
    let filled = fill(&tmp).and_then(|value| {
        sync_tree(&tmp)
            .and_then(|()| swap_in(&tmp, dir))
            .map_err(WriteError::at(dir))?;
        Ok(value)
    });
    if filled.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    filled
}

/// Renames the complete folder `tmp` to `dir`, moving an existing `dir` aside first (and back
/// if the rename fails), and syncs the parent folder.
fn swap_in(tmp: &Path, dir: &Path) -> io::Result<()> {
    if !dir.exists() {
        std::fs::rename(tmp, dir)?;
        return sync_dir(parent(dir));
    }
    let old = sibling(dir, OLD);
    if old.exists() {
        std::fs::remove_dir_all(&old)?;
    }
    std::fs::rename(dir, &old)?;
    if let Err(cause) = std::fs::rename(tmp, dir) {
        let _ = std::fs::rename(&old, dir);
        return Err(cause);
    }
    sync_dir(parent(dir))?;
    // The new folder is in place and durable; a folder moved aside that cannot be removed now is
    // a temporary that `remove_temporaries` clears later, not a failed write.
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// Moves the folder (or file) `path` aside under a temporary name (`.NAME.old-PID`) and returns
/// that name, for deleting it: a process killed while deleting then leaves a temporary, which
/// [`remove_temporaries`] clears, rather than a half-deleted folder under the real name.
pub fn move_aside(path: &Path) -> Result<PathBuf, WriteError> {
    let aside = sibling(path, OLD);
    std::fs::rename(path, &aside).map_err(WriteError::at(path))?;
    sync_dir(parent(path)).map_err(WriteError::at(parent(path)))?;
    Ok(aside)
}

/// Renames the complete file `from` to `to` and syncs the folders involved, so the new name
/// survives a power cut. For files written by appending (a resumable output), published once.
pub fn rename_durable(from: &Path, to: &Path) -> Result<(), WriteError> {
    File::open(from)
        .and_then(|file| file.sync_all())
        .map_err(WriteError::at(from))?;
    std::fs::rename(from, to).map_err(WriteError::at(to))?;
    sync_dir(parent(to)).map_err(WriteError::at(parent(to)))?;
    if parent(from) != parent(to) {
        sync_dir(parent(from)).map_err(WriteError::at(parent(from)))?;
    }
    Ok(())
}

/// Removes every temporary ([`is_temporary`]) in `folder`, files and folders, of any process:
/// what writers killed in the middle left. Call it only on a folder no other process is writing
/// into (one whose lock this process holds); a missing folder is fine.
pub fn remove_temporaries(folder: &Path) -> Result<(), WriteError> {
    let entries = match std::fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(cause) if cause.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(cause) => return Err(WriteError::at(folder)(cause)),
    };
    for entry in entries {
        let entry = entry.map_err(WriteError::at(folder))?;
        if !is_temporary(&entry.file_name()) {
            continue;
        }
        let path = entry.path();
        let removed = match entry.file_type() {
            Ok(kind) if kind.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
        match removed {
            Err(cause) if cause.kind() != io::ErrorKind::NotFound => {
                return Err(WriteError::at(&path)(cause));
            }
            _ => {}
        }
    }
    Ok(())
}

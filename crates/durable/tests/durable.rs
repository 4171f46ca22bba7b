//! A durable write leaves the target whole (old or new) and no temporary behind, whether it
//! succeeds or fails.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use softalign_durable::{
    WriteError, is_temporary, move_aside, remove_temporaries, rename_durable, replace_dir_atomic,
    temporary_path, write_file_atomic, write_file_atomic_with,
};

fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("softalign-durable-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn failure(path: &Path) -> WriteError {
    WriteError::at(path)(std::io::Error::other("no space left on device"))
}

#[test]
fn a_written_file_replaces_the_target_whole_and_leaves_no_temporary() {
    let dir = fresh_dir("file");
    let path = dir.join("config.toml");
    write_file_atomic(&path, b"seed = 1\nsteps = 100\n").unwrap();
    write_file_atomic(&path, b"seed = 2\n").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"seed = 2\n");
    assert_eq!(names(&dir), ["config.toml"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_parent_folders_are_created() {
    let dir = fresh_dir("parents");
    let path = dir.join("a").join("b").join("report.json");
    write_file_atomic(&path, b"{}").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"{}");
    let folder = dir.join("c").join("model");
    replace_dir_atomic(&folder, |tmp| {
        std::fs::write(tmp.join("config.json"), "{}").map_err(WriteError::at(tmp))
    })
    .unwrap();
    assert!(folder.join("config.json").is_file());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failing_file_writer_leaves_the_old_file_and_no_temporary() {
    let dir = fresh_dir("file-failure");
    let path = dir.join("figure.png");
    write_file_atomic(&path, b"old").unwrap();
    let result: Result<(), WriteError> = write_file_atomic_with(&path, |tmp| {
        // The writer created part of its file before failing, as a full disk does.
        std::fs::write(tmp, b"half").unwrap();
        Err(failure(tmp))
    });
    assert!(result.is_err());
    assert_eq!(std::fs::read(&path).unwrap(), b"old");
    assert_eq!(names(&dir), ["figure.png"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_temporary_is_hidden_beside_the_target_and_keeps_its_extension() {
    let dir = fresh_dir("extension");
    let path = dir.join("reward_margins.png");
    let pid = std::process::id();
    let seen = write_file_atomic_with(&path, |tmp| {
        std::fs::write(tmp, b"png").map_err(WriteError::at(tmp))?;
        Ok::<_, WriteError>(tmp.to_path_buf())
    })
    .unwrap();
    assert_eq!(seen, dir.join(format!(".reward_margins.partial-{pid}.png")));
    assert_eq!(seen, temporary_path(&path));
    assert_eq!(
        temporary_path(&dir.join("step-00000006")),
        dir.join(format!(".step-00000006.partial-{pid}"))
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_replaced_folder_holds_only_the_new_content_and_no_temporary_remains() {
    let dir = fresh_dir("folder");
    let target = dir.join("model");
    replace_dir_atomic(&target, |tmp| {
        std::fs::write(tmp.join("old-only.bin"), b"1").map_err(WriteError::at(tmp))?;
        std::fs::write(tmp.join("config.json"), b"old").map_err(WriteError::at(tmp))
    })
    .unwrap();
    let value = replace_dir_atomic(&target, |tmp| {
        std::fs::create_dir(tmp.join("nested")).map_err(WriteError::at(tmp))?;
        std::fs::write(tmp.join("nested").join("w.bin"), b"2").map_err(WriteError::at(tmp))?;
        std::fs::write(tmp.join("config.json"), b"new").map_err(WriteError::at(tmp))?;
        Ok::<_, WriteError>(7)
    })
    .unwrap();
    assert_eq!(value, 7);
    assert_eq!(names(&target), ["config.json", "nested"]);
    assert_eq!(std::fs::read(target.join("config.json")).unwrap(), b"new");
    assert_eq!(names(&dir), ["model"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failing_folder_writer_leaves_the_old_folder_and_no_temporary() {
    let dir = fresh_dir("folder-failure");
    let target = dir.join("step-00000004");
    replace_dir_atomic(&target, |tmp| {
        std::fs::write(tmp.join("model.bpk"), b"old").map_err(WriteError::at(tmp))
    })
    .unwrap();
    let result: Result<(), WriteError> = replace_dir_atomic(&target, |tmp| {
        std::fs::write(tmp.join("model.bpk"), b"torn").unwrap();
        Err(failure(tmp))
    });
    assert!(result.is_err());
    assert_eq!(std::fs::read(target.join("model.bpk")).unwrap(), b"old");
    assert_eq!(names(&dir), ["step-00000004"]);

    // A first write that fails leaves nothing at all.
    let fresh = dir.join("adapter");
    let result: Result<(), WriteError> = replace_dir_atomic(&fresh, |tmp| Err(failure(tmp)));
    assert_eq!(
        result.unwrap_err().to_string(),
        format!(
            "{}: no space left on device",
            temporary_path(&fresh).display()
        )
    );
    assert_eq!(names(&dir), ["step-00000004"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn temporaries_are_recognised_by_name_and_only_they_are_removed() {
    for name in [
        ".config.partial-4242.toml",
        ".step-00000006.partial-1",
        ".model.old-77",
        ".reward_margins.partial-9.png",
    ] {
        assert!(is_temporary(OsStr::new(name)), "{name}");
    }
    for name in [
        "config.toml",
        "step-00000006",
        "pairs.jsonl.partial",
        ".softalign.lock",
        ".model.partial-",
        ".model.partial-12x",
        "model.partial-12",
    ] {
        assert!(!is_temporary(OsStr::new(name)), "{name}");
    }

    let dir = fresh_dir("leftovers");
    // What writers killed in the middle (other processes) left, beside the user's files.
    std::fs::create_dir_all(dir.join(".step-00000002.partial-4000001").join("inner")).unwrap();
    std::fs::write(dir.join(".config.partial-4000002.toml"), b"half").unwrap();
    std::fs::create_dir_all(dir.join(".model.old-4000003")).unwrap();
    std::fs::write(dir.join("notes.txt"), b"mine").unwrap();
    std::fs::create_dir_all(dir.join("step-00000001")).unwrap();
    remove_temporaries(&dir).unwrap();
    assert_eq!(names(&dir), ["notes.txt", "step-00000001"]);
    remove_temporaries(&dir.join("missing")).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_durable_rename_moves_the_file() {
    let dir = fresh_dir("rename");
    let from = dir.join("labels.jsonl.partial");
    std::fs::write(&from, b"{}\n").unwrap();
    rename_durable(&from, &dir.join("labels.jsonl")).unwrap();
    assert_eq!(names(&dir), ["labels.jsonl"]);
    let missing = rename_durable(&from, &dir.join("labels.jsonl")).unwrap_err();
    assert_eq!(missing.path, from);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_folder_moved_aside_is_a_temporary_under_another_name() {
    let dir = fresh_dir("aside");
    let doomed = dir.join("step-00000002");
    std::fs::create_dir_all(&doomed).unwrap();
    std::fs::write(doomed.join("model.bpk"), b"x").unwrap();
    let aside = move_aside(&doomed).unwrap();
    assert!(!doomed.exists() && aside.join("model.bpk").is_file());
    assert!(is_temporary(aside.file_name().unwrap()));
    // A process killed before deleting it leaves only what the folder's owner clears.
    remove_temporaries(&dir).unwrap();
    assert_eq!(names(&dir), Vec::<String>::new());
    std::fs::remove_dir_all(&dir).unwrap();
}

use super::*;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn names_in(dir: &Path) -> Result<Vec<String>, std::io::Error> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    names.sort();
    Ok(names)
}

#[test]
fn missing_folders_are_created_one_by_one_and_the_last_is_returned() -> TestResult {
    let dir = tempfile::tempdir()?;
    let deep = dir.path().join("neopro/logs");
    let fd = create(&deep, 0o755)?;
    assert!(deep.is_dir());
    rustix::fs::mkdirat(&fd, "inside", Mode::from_raw_mode(0o755))?;
    assert!(deep.join("inside").is_dir());
    open(&deep)?;
    Ok(())
}

#[test]
fn a_linked_folder_in_a_shared_folder_is_refused_and_nothing_is_made_behind_it() -> TestResult {
    let dir = shared_test_folder()?;
    let outside = tempfile::tempdir()?;
    std::fs::write(outside.path().join("state.json"), "{}")?;
    let logs = dir.path().join("logs");
    std::os::unix::fs::symlink(outside.path(), &logs)?;
    let err = open(&logs).err().ok_or("opened through the link")?;
    assert_eq!(
        err.to_string(),
        format!(
            "{} is a symbolic link in {}, a folder that other users than the agent can change (owner uid {}, mode 0775); links are not followed there",
            logs.display(),
            dir.path().display(),
            agent_uid()
        )
    );
    // Deeper, and with create: still refused, nothing made in the target.
    let err = create(&logs.join("old/sub"), 0o755)
        .err()
        .ok_or("created through the link")?;
    assert!(matches!(err, FolderError::Link { .. }), "{err}");
    assert_eq!(names_in(outside.path())?, ["state.json"]);
    assert!(std::fs::symlink_metadata(&logs)?.file_type().is_symlink());
    // A link on the way to /etc, as the brief's attacker plants it.
    std::fs::remove_file(&logs)?;
    std::os::unix::fs::symlink("/etc", &logs)?;
    let err = open(&logs.join("neopro")).err().ok_or("reached /etc")?;
    assert!(matches!(err, FolderError::Link { .. }), "{err}");
    Ok(())
}

#[test]
fn a_link_only_the_agent_could_place_is_followed() -> TestResult {
    // The tempdir is the agent's own (0700): its links are the agent's.
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("disk/videos"))?;
    std::os::unix::fs::symlink("disk/videos", dir.path().join("videos"))?;
    std::os::unix::fs::symlink(dir.path().join("disk"), dir.path().join("abs"))?;
    let fd = open(&dir.path().join("videos"))?;
    rustix::fs::mkdirat(&fd, "made", Mode::from_raw_mode(0o755))?;
    assert!(dir.path().join("disk/videos/made").is_dir());
    open(&dir.path().join("abs/videos/made/../made"))?;
    Ok(())
}

#[test]
fn a_file_or_a_fifo_on_the_way_is_not_a_folder() -> TestResult {
    let dir = shared_test_folder()?;
    std::fs::write(dir.path().join("logs"), "")?;
    let err = open(&dir.path().join("logs/x")).err().ok_or("opened")?;
    assert_eq!(
        err.to_string(),
        format!(
            "{} is a regular file, not a folder",
            dir.path().join("logs").display()
        )
    );
    let fifo = dir.path().join("fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        FileType::Fifo,
        Mode::from_raw_mode(0o666),
        0,
    )?;
    let err = create(&fifo, 0o755).err().ok_or("opened")?;
    assert!(
        err.to_string().ends_with("is a FIFO, not a folder"),
        "{err}"
    );
    Ok(())
}

#[test]
fn a_loop_of_links_ends_with_an_error() -> TestResult {
    let dir = tempfile::tempdir()?;
    std::os::unix::fs::symlink("b", dir.path().join("a"))?;
    std::os::unix::fs::symlink("a", dir.path().join("b"))?;
    let err = open(&dir.path().join("a")).err().ok_or("opened")?;
    assert!(matches!(err, FolderError::TooManyLinks(_)), "{err}");
    let missing = open(&dir.path().join("none")).err().ok_or("opened")?;
    assert!(matches!(missing, FolderError::NotFound(_)), "{missing}");
    Ok(())
}

use super::*;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn mkfifo(path: &Path) -> std::io::Result<()> {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        FileType::Fifo,
        Mode::from_raw_mode(0o666),
        0,
    )?;
    Ok(())
}

#[test]
fn a_regular_file_is_read_whole() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("VERSION");
    std::fs::write(&path, "2.1.0\n")?;
    assert_eq!(read_bounded(&path, 100)?, b"2.1.0\n");
    Ok(())
}

#[test]
fn a_link_is_refused_without_reading_its_target() -> TestResult {
    let dir = tempfile::tempdir()?;
    let secret = dir.path().join("site.conf");
    std::fs::write(&secret, "SITE_API_KEY=secret")?;
    let path = dir.path().join("release.json");
    std::os::unix::fs::symlink(&secret, &path)?;
    let err = read_bounded(&path, 1000)
        .err()
        .ok_or("read through a link")?;
    assert!(matches!(err, UntrustedFileError::Link(_)), "{err}");
    assert!(!err.to_string().contains("secret"));
    // A link to /dev/zero is refused before anything is read.
    std::fs::remove_file(&path)?;
    std::os::unix::fs::symlink("/dev/zero", &path)?;
    let err = read_bounded(&path, 1000).err().ok_or("read /dev/zero")?;
    assert!(matches!(err, UntrustedFileError::Link(_)), "{err}");
    Ok(())
}

#[test]
fn a_fifo_is_refused_without_blocking() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("configuration.json");
    mkfifo(&path)?;
    let (tx, rx) = std::sync::mpsc::channel();
    let p = path.clone();
    std::thread::spawn(move || {
        let _ = tx.send(read_bounded(&p, 1000).map_err(|e| e.to_string()));
    });
    let got = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .map_err(|_| "reading the FIFO blocked")?;
    assert_eq!(
        got,
        Err(format!(
            "{} is a FIFO, not a regular file; it is not opened",
            path.display()
        ))
    );
    Ok(())
}

#[test]
fn a_file_past_the_bound_is_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("package.json");
    std::fs::write(&path, [b' '; 101])?;
    let err = read_bounded(&path, 100)
        .err()
        .ok_or("read past the bound")?;
    assert_eq!(
        err.to_string(),
        format!(
            "{} is 101 bytes, more than the 100 bytes read from it",
            path.display()
        )
    );
    Ok(())
}

#[test]
fn the_agents_own_file_must_not_be_hard_linked() -> TestResult {
    let dir = tempfile::tempdir()?;
    let state = dir.path().join("state.json");
    std::fs::write(&state, "{}")?;
    let path = dir.path().join("a.log");
    std::fs::hard_link(&state, &path)?;
    assert!(open_read(&path, Owner::Anyone).is_ok());
    let err = open_read(&path, Owner::Agent)
        .err()
        .ok_or("hard link accepted")?;
    assert!(
        matches!(err, UntrustedFileError::HardLinked { links: 2, .. }),
        "{err}"
    );
    Ok(())
}

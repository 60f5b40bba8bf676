//! One `scoria serve` per data directory: a second one refuses to start
//! (it would resume the first one's flows), and the lock goes with the first
//! process however it ends.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

fn serve(data: &std::path::Path) -> Result<Child> {
    Command::new(env!("CARGO_BIN_EXE_scoria"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("SCORIA_ADMIN_PASSWORD", "secret-password")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning scoria")
}

/// Wait until the server says where it listens.
fn wait_listening(child: &mut Child) -> Result<()> {
    let stdout = child.stdout.take().context("stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("listening on ") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .context("scoria did not start")
}

#[test]
fn a_second_server_on_one_data_directory_refuses_to_start() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut first = serve(dir.path())?;
    wait_listening(&mut first)?;

    let second = serve(dir.path())?.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&second.stderr);
    if second.status.success() || !stderr.contains("another scoria serve runs on") {
        let _ = first.kill();
        bail!(
            "the second server was not refused: {:?} {stderr}",
            second.status
        );
    }

    // kill -9 releases the lock: the next server starts.
    first.kill()?;
    first.wait()?;
    let mut third = serve(dir.path())?;
    let started = wait_listening(&mut third);
    let _ = third.kill();
    let _ = third.wait();
    started
}

//! Bundles the dashboard (`../dashboard`: its `src/`, with ECharts from the npm registry)
//! into `$OUT_DIR/dashboard/` with its own `build.mjs` (esbuild); the binary embeds those
//! files (`api::assets`), so the page needs nothing fetched at run time.
//!
//! `npm ci` runs first when `dashboard/node_modules` is missing or older than
//! `package-lock.json`, under a lock folder, as cargo may build two profiles at once.
use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, SystemTime},
};

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let dash = manifest.join("../dashboard");
    for f in [
        "src",
        "index.html",
        "build.mjs",
        "package.json",
        "package-lock.json",
    ] {
        println!("cargo:rerun-if-changed={}", dash.join(f).display());
    }
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR")).join("dashboard");
    if stale(&dash) {
        let _lock = Lock::take(&dash.join(".npm-ci.lock"));
        if stale(&dash) {
            run(
                Command::new("npm")
                    .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                    .current_dir(&dash),
                "npm ci",
            );
        }
    }
    run(
        Command::new("node")
            .arg("build.mjs")
            .arg(&out)
            .current_dir(&dash),
        "node build.mjs",
    );
}

/// Whether `node_modules` is missing or older than the lock file.
fn stale(dash: &Path) -> bool {
    let modified = |p: PathBuf| fs::metadata(p).and_then(|m| m.modified()).ok();
    match (
        modified(dash.join("node_modules/.package-lock.json")),
        modified(dash.join("package-lock.json")),
    ) {
        (Some(installed), Some(locked)) => installed < locked,
        _ => true,
    }
}

fn run(cmd: &mut Command, what: &str) {
    match cmd.status() {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("{what} failed ({s}) in dashboard/"),
        Err(e) => panic!(
            "{what}: {e}. The dashboard is built with Node.js and npm: run ./scripts/install-deps.sh"
        ),
    }
}

/// A folder made atomically; taken over when older than ten minutes (a build killed
/// while holding it).
struct Lock(PathBuf);

impl Lock {
    fn take(path: &Path) -> Lock {
        loop {
            match fs::create_dir(path) {
                Ok(()) => return Lock(path.to_path_buf()),
                Err(_) => {
                    let age = fs::metadata(path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| SystemTime::now().duration_since(t).ok());
                    if age.is_some_and(|a| a > Duration::from_secs(600)) {
                        let _ = fs::remove_dir(path);
                    }
                    thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.0);
    }
}

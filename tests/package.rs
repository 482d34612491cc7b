//! The Debian package as an operator gets it (issue 15): `scripts/package` builds it, `lintian`
//! finds no error, and in a clean Debian 12 root made with `debootstrap` it installs, runs,
//! upgrades and purges as docs/running.md says.
//!
//! The package holds the debug build of vmtel that `cargo test` has just made
//! (`scripts/package --binary`), stripped like the release one: building the release binary too
//! would add several minutes to the suite, and everything the package adds to the binary (layout,
//! unit, conffile, maintainer scripts, dependencies) is the same. `scripts/package` without
//! `--binary` builds the release package.
//!
//! The root (debootstrap `--variant=minbase` with `libvirt0`, `adduser` and `systemd`, so that
//! installing the .deb needs no network) is built once and kept as a tarball in `/var/cache/vmtel-tests`; each
//! run extracts a fresh copy. Delete the tarball to rebuild it; `VMTEL_TEST_DEBIAN_MIRROR`
//! overrides the mirror, which is otherwise the Debian archive of the host's apt sources.
//!
//! Needs root, `debootstrap`, `lintian`, `systemd-analyze`, `readelf`, cargo-deb and
//! cargo-about (`scripts/deps test` installs them). Without them the test prints that it skipped; under
//! `CI=true` it fails instead.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

const SUITE: &str = "bookworm";
/// Installed into the root besides minbase: the package's dependencies (the shlibs ones and
/// adduser), so that `dpkg -i` needs no network, and what `systemd-analyze verify` needs to check
/// the unit in the root (systemd's units, /bin/kill of ExecReload=).
const INCLUDE: &[&str] = &["adduser", "libvirt0", "procps", "systemd"];
const CACHE_DIR: &str = "/var/cache/vmtel-tests";
const SAMPLE_CONFIG: &str = include_str!("../dist/vmtel.toml");

#[test]
fn debian_package_installs_upgrades_and_purges() {
    if let Err(why) = prerequisites() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("the package test cannot run: {why}. CI=true, so it may not be skipped");
        }
        eprintln!("skipped: the package test cannot run: {why}");
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::Builder::new()
        .prefix("vmtel-package-test-")
        .tempdir()
        .expect("temporary directory");

    // Two builds: the package, and a later version of it to upgrade to.
    let v1 = format!("{}-1", env!("CARGO_PKG_VERSION"));
    let v2 = format!("{}-2", env!("CARGO_PKG_VERSION"));
    let t = Instant::now();
    let deb1 = build_deb(repo, &work.path().join("v1"), &v1);
    let deb2 = build_deb(repo, &work.path().join("v2"), &v2);
    eprintln!("package: built 2 .debs in {:.1?}", t.elapsed());

    check_control(&deb1, &v1);
    let t = Instant::now();
    lintian(&deb1);
    eprintln!("package: lintian took {:.1?}", t.elapsed());

    let t = Instant::now();
    let tarball = cached_root();
    let root = work.path().join("root");
    fs::create_dir(&root).expect("mkdir root");
    run(
        host("tar").arg("-xpf").arg(&tarball).arg("-C").arg(&root),
        "extract the cached Debian root",
    );
    eprintln!("package: root ready in {:.1?}", t.elapsed());
    let root = Root(root);
    for deb in [&deb1, &deb2] {
        fs::copy(deb, root.path(&tmp_name(deb))).expect("copy the .deb into the root");
    }

    // Install.
    root.ok(&["dpkg", "-i", &tmp_name(&deb1)], "install the package");
    assert_eq!(root.version(), v1);
    check_installed_files(&root);
    check_licences(&root, repo);
    check_runs(&root);
    check_user_and_state(&root);
    assert!(
        !root.groups("vmtel").contains(&"libvirt".to_owned()),
        "there is no libvirt group in the root yet"
    );
    check_unit(&root);
    assert_eq!(
        root.unit_state(),
        "disabled",
        "the package installs the unit but does not enable it"
    );
    root.ok(&["systemctl", "enable", "vmtel"], "systemctl enable vmtel");

    // An operator edits the config; vmtel keeps state. Then libvirt appears (its group), and the
    // next version is installed over this one.
    let edited = SAMPLE_CONFIG.replace("interval = \"10s\"", "interval = \"15s\"")
        + "\n# edited by the operator\n";
    assert_ne!(edited, SAMPLE_CONFIG);
    fs::write(root.path("/etc/vmtel/vmtel.toml"), &edited).expect("edit the config");
    root.ok(
        &["vmtel", "check-config", "/etc/vmtel/vmtel.toml"],
        "check the edited config",
    );
    let state_file = "/var/lib/vmtel/history.db";
    fs::write(root.path(state_file), "state of the first version").expect("write state");
    root.ok(&["chown", "vmtel:vmtel", state_file], "chown the state");
    root.ok(
        &["groupadd", "--system", "libvirt"],
        "create the libvirt group",
    );

    // Upgrade: the edited config and the state stay; the user joins the libvirt group.
    let out = root.ok(&["dpkg", "-i", &tmp_name(&deb2)], "upgrade the package");
    assert_eq!(root.version(), v2);
    let text = output_text(&out);
    assert!(
        !text.contains("Configuration file"),
        "the unchanged conffile must not prompt on upgrade:\n{text}"
    );
    assert_eq!(
        fs::read_to_string(root.path("/etc/vmtel/vmtel.toml")).expect("config after upgrade"),
        edited,
        "the upgrade must keep the edited config"
    );
    assert_eq!(
        fs::read_to_string(root.path(state_file)).expect("state after upgrade"),
        "state of the first version",
        "the upgrade must keep the state"
    );
    check_user_and_state(&root);
    assert!(
        root.groups("vmtel").contains(&"libvirt".to_owned()),
        "after the upgrade, with a libvirt group present, vmtel must be in it: {:?}",
        root.groups("vmtel")
    );
    check_runs(&root);
    assert_eq!(
        root.unit_state(),
        "enabled",
        "the upgrade keeps the unit enabled"
    );

    // Remove: the program goes, the config stays.
    root.ok(&["dpkg", "--remove", "vmtel"], "remove the package");
    assert!(
        !root.path("/usr/bin/vmtel").exists(),
        "remove leaves /usr/bin/vmtel"
    );
    assert!(
        root.path("/etc/vmtel/vmtel.toml").exists(),
        "remove (without purge) must keep the config"
    );

    // Purge: the config goes, the state stays and the purge says where it is.
    let out = root.ok(&["dpkg", "--purge", "vmtel"], "purge the package");
    let text = output_text(&out);
    assert!(
        !root.path("/etc/vmtel").exists(),
        "purge must remove /etc/vmtel:\n{text}"
    );
    assert!(
        text.contains("/var/lib/vmtel"),
        "purge must say where the state is:\n{text}"
    );
    assert_eq!(
        fs::read_to_string(root.path(state_file)).expect("state after purge"),
        "state of the first version",
        "purge keeps the state"
    );
    assert!(
        !root
            .path("/etc/systemd/system/multi-user.target.wants/vmtel.service")
            .exists(),
        "purge must remove the unit's enablement symlink"
    );
    let status = root.run(&["dpkg-query", "-W", "-f=${Status}", "vmtel"]);
    assert!(
        !output_text(&status).contains("installed"),
        "vmtel is still known to dpkg after purge: {}",
        output_text(&status)
    );
}

/// Why the test cannot run here, if it cannot.
fn prerequisites() -> Result<(), String> {
    // /proc/self belongs to the process's effective user.
    let euid = fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m));
    if euid.ok() != Some(0) {
        return Err("it needs root (debootstrap, chroot, dpkg in the root); run it as root".into());
    }
    let missing: Vec<&str> = [
        "debootstrap",
        "lintian",
        "systemd-analyze",
        "readelf",
        "dpkg-deb",
        "chroot",
    ]
    .into_iter()
    .filter(|tool| !on_path(tool))
    .collect();
    if !missing.is_empty() {
        return Err(format!(
            "{} not found; scripts/deps test installs them",
            missing.join(", ")
        ));
    }
    for tool in ["deb", "about"] {
        let found = host("cargo")
            .args([tool, "--version"])
            .stdin(Stdio::null())
            .output();
        if !found.is_ok_and(|o| o.status.success()) {
            return Err(format!(
                "cargo-{tool} not found; scripts/deps test installs it"
            ));
        }
    }
    Ok(())
}

/// `$PATH` with /usr/sbin and /sbin, where debootstrap and chroot are, even when root's `$PATH`
/// lacks them.
fn search_path() -> std::ffi::OsString {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    for sbin in ["/usr/sbin", "/sbin"] {
        if !dirs.iter().any(|d| d == Path::new(sbin)) {
            dirs.push(sbin.into());
        }
    }
    std::env::join_paths(dirs).expect("PATH")
}

/// A command on the host, found in [`search_path`].
fn host(tool: &str) -> Command {
    let mut cmd = Command::new(tool);
    cmd.env("PATH", search_path());
    cmd
}

fn on_path(tool: &str) -> bool {
    std::env::split_paths(&search_path()).any(|dir| {
        dir.join(tool)
            .metadata()
            .is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
    })
}

/// `scripts/package` with the suite's debug build; returns the .deb.
fn build_deb(repo: &Path, out: &Path, version: &str) -> PathBuf {
    fs::create_dir_all(out).expect("mkdir");
    let output = run(
        Command::new(repo.join("scripts/package"))
            .env("PATH", search_path())
            .arg("--binary")
            .arg(env!("CARGO_BIN_EXE_vmtel"))
            .args(["--fast", "--deb-version", version, "--output"])
            .arg(out),
        "scripts/package",
    );
    let deb = String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .map(|l| PathBuf::from(l.trim()))
        .unwrap_or_default();
    assert!(
        deb.is_file() && deb.starts_with(out),
        "scripts/package should print the .deb it wrote in {}, printed:\n{}",
        out.display(),
        output_text(&output)
    );
    deb
}

/// The control fields: the version asked for, the dependencies from shlibs and adduser.
fn check_control(deb: &Path, version: &str) {
    let field = |name: &str| {
        let out = run(
            host("dpkg-deb").arg("--field").arg(deb).arg(name),
            "dpkg-deb --field",
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(field("Package"), "vmtel");
    assert_eq!(field("Version"), version);
    let depends = field("Depends");
    for dep in ["libvirt0", "libc6", "adduser"] {
        assert!(
            depends.split(',').any(|d| d.trim().starts_with(dep)),
            "Depends lacks {dep}: {depends}"
        );
    }
    let contents = run(
        host("dpkg-deb").arg("--contents").arg(deb),
        "dpkg-deb --contents",
    );
    let contents = String::from_utf8_lossy(&contents.stdout);
    for path in [
        "./usr/bin/vmtel",
        "./usr/lib/systemd/system/vmtel.service",
        "./etc/vmtel/vmtel.toml",
        "./usr/share/doc/vmtel/copyright",
        "./usr/share/doc/vmtel/README.md",
        "./usr/share/doc/vmtel/docs/running.md",
        "./usr/share/man/man1/vmtel.1.gz",
    ] {
        assert!(
            contents.lines().any(|l| l.ends_with(path)),
            "the package lacks {path}:\n{contents}"
        );
    }
}

/// lintian: no errors, and a manual page. Warnings are printed for whoever reads the log.
fn lintian(deb: &Path) {
    let out = host("lintian")
        .args(["--tag-display-limit", "0"])
        .arg(deb)
        .stdin(Stdio::null())
        .output()
        .expect("run lintian");
    let text = output_text(&out);
    eprintln!("package: lintian says:\n{text}");
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("E: ")).collect();
    assert!(
        errors.is_empty(),
        "lintian found errors:\n{}",
        errors.join("\n")
    );
    assert!(
        !text.contains("internal error") && !text.contains("Unknown option"),
        "lintian did not check the package:\n{text}"
    );
    assert!(
        !text.contains("no-manual-page"),
        "the package has no manual page:\n{text}"
    );
}

/// In the root, after installing: where every file went.
fn check_installed_files(root: &Root) {
    let binary = root.path("/usr/bin/vmtel");
    let sections = run(host("readelf").args(["-S", "-W"]).arg(&binary), "readelf");
    let sections = String::from_utf8_lossy(&sections.stdout);
    for section in [".debug_info", ".symtab"] {
        assert!(
            !sections.contains(section),
            "/usr/bin/vmtel is not stripped: it has {section}"
        );
    }
    // The unit at /lib/systemd/system (bookworm's merged /usr: the package ships it in
    // /usr/lib/systemd/system, where lintian wants it).
    let unit = fs::read_to_string(root.path("/lib/systemd/system/vmtel.service"))
        .expect("/lib/systemd/system/vmtel.service");
    assert_eq!(
        unit,
        include_str!("../dist/vmtel.service"),
        "the installed unit is dist/vmtel.service"
    );
    assert_eq!(
        fs::read_to_string(root.path("/etc/vmtel/vmtel.toml")).expect("config"),
        SAMPLE_CONFIG,
        "the installed config is dist/vmtel.toml"
    );
    let conffiles = root.run(&["dpkg-query", "-W", "-f=${Conffiles}", "vmtel"]);
    assert!(
        output_text(&conffiles).contains("/etc/vmtel/vmtel.toml"),
        "/etc/vmtel/vmtel.toml is not a conffile: {}",
        output_text(&conffiles)
    );
    let copyright = fs::read_to_string(root.path("/usr/share/doc/vmtel/copyright"))
        .expect("/usr/share/doc/vmtel/copyright");
    assert!(copyright.contains("Apache-2.0"), "copyright:\n{copyright}");
}

/// /usr/share/doc/vmtel/THIRD-PARTY-LICENSES names every crate built into the binary (the
/// normal dependencies, as `cargo tree` resolves them from Cargo.lock) under a licence with its
/// text, among them the LGPL-2.1 of the libvirt bindings.
fn check_licences(root: &Root, repo: &Path) {
    let path = "/usr/share/doc/vmtel/THIRD-PARTY-LICENSES";
    let text = fs::read_to_string(root.path(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    // One section per licence text: a header line "<name> (<id>), used by:", the crates
    // indented by four spaces, then the text.
    let sections: Vec<&str> = text.split("\n================").skip(1).collect();
    let tree = run(
        Command::new("cargo")
            .current_dir(repo)
            .args(["tree", "--locked", "-e", "normal", "--prefix", "none"])
            .args(["-f", "{p}"]),
        "cargo tree",
    );
    let crates: std::collections::BTreeSet<String> = String::from_utf8_lossy(&tree.stdout)
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let (name, version) = (words.next()?, words.next()?.strip_prefix('v')?);
            Some(format!("    {name} {version}"))
        })
        .collect();
    assert!(crates.len() > 50, "cargo tree listed {crates:?}");
    for c in &crates {
        let section = sections
            .iter()
            .find(|s| s.lines().any(|l| l == c.as_str()))
            .unwrap_or_else(|| panic!("{path} does not list{c}"));
        assert!(
            section.len() > 300,
            "{c}'s licence has no text in {path}:\n{section}"
        );
    }
    let virt = crates
        .iter()
        .find(|c| c.starts_with("    virt "))
        .expect("vmtel depends on the virt crate");
    let section = sections
        .iter()
        .find(|s| s.lines().any(|l| l == virt.as_str()))
        .expect("virt's section");
    assert!(
        section.contains("(LGPL-2.1") && section.contains("GNU LESSER GENERAL PUBLIC LICENSE"),
        "the libvirt bindings' licence in {path}:\n{}",
        &section[..section.len().min(600)]
    );
}

/// The three commands of the issue, as the vmtel user where it matters.
fn check_runs(root: &Root) {
    let out = root.ok(&["vmtel", "--version"], "vmtel --version");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("vmtel {}", env!("CARGO_PKG_VERSION"))
    );
    root.ok(
        &["vmtel", "check-config", "/etc/vmtel/vmtel.toml"],
        "vmtel check-config",
    );
    let out = root.ok(
        &[
            "setpriv",
            "--reuid=vmtel",
            "--regid=vmtel",
            "--init-groups",
            "vmtel",
            "once",
            "--uri",
            "test:///default",
        ],
        "vmtel once --uri test:///default as the vmtel user",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    for measurement in ["vm_metrics,", "vm_totals,", "vm_features,"] {
        assert!(
            stdout.lines().any(|l| l.starts_with(measurement)),
            "vmtel once printed no {measurement} line:\n{stdout}"
        );
    }
}

/// The vmtel system user exists and owns /var/lib/vmtel.
fn check_user_and_state(root: &Root) {
    let passwd = fs::read_to_string(root.path("/etc/passwd")).expect("passwd");
    let entry: Vec<&str> = passwd
        .lines()
        .find(|l| l.starts_with("vmtel:"))
        .unwrap_or_else(|| panic!("no vmtel user:\n{passwd}"))
        .split(':')
        .collect();
    let uid: u32 = entry[2].parse().expect("uid");
    assert!(uid < 1000, "vmtel is not a system user: uid {uid}");
    assert_eq!(entry[5], "/var/lib/vmtel", "home");
    assert_eq!(entry[6], "/usr/sbin/nologin", "shell");
    let state = fs::metadata(root.path("/var/lib/vmtel")).expect("/var/lib/vmtel");
    assert!(state.is_dir());
    assert_eq!(state.uid(), uid, "/var/lib/vmtel must be owned by vmtel");
    assert_eq!(state.mode() & 0o777, 0o750, "/var/lib/vmtel mode");
}

/// `systemd-analyze verify` accepts the installed unit, with the root's systemd units and binary.
/// It reports some problems (a bad value) only as a message, so any message about the unit fails.
fn check_unit(root: &Root) {
    let out = host("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.0.display()))
        .arg("/usr/lib/systemd/system/vmtel.service")
        .stdin(Stdio::null())
        .output()
        .expect("run systemd-analyze");
    let text = output_text(&out);
    assert!(
        out.status.success() && !text.contains("vmtel.service"),
        "systemd-analyze verify rejects the unit:\n{text}"
    );
}

/// The tarball of a clean root, made with debootstrap on the first run.
fn cached_root() -> PathBuf {
    let cache = Path::new(CACHE_DIR);
    fs::create_dir_all(cache).unwrap_or_else(|e| panic!("cannot create {CACHE_DIR}: {e}"));
    let tarball = cache.join(format!(
        "debootstrap-{SUITE}-minbase-{}.tar",
        INCLUDE.join("+")
    ));
    // Another suite (another worktree) may be making the same root: one at a time.
    let _lock = Lock::take(&cache.join("debootstrap.lock"));
    if tarball.is_file() {
        return tarball;
    }
    let mirror = mirror();
    eprintln!(
        "package: no cached root at {}; debootstrap {SUITE} from {mirror} (a few minutes, once)",
        tarball.display()
    );
    let t = Instant::now();
    // What a run that died half-way left (the lock is ours, so no other run is using it).
    for entry in fs::read_dir(cache).expect("read the cache").flatten() {
        if entry.file_name().to_string_lossy().starts_with("build-") {
            drop(Scratch(entry.path()));
        }
    }
    let scratch = Scratch(cache.join(format!("build-{}", std::process::id())));
    let build = &scratch.0;
    run(
        host("debootstrap")
            .arg("--variant=minbase")
            .arg(format!("--include={}", INCLUDE.join(",")))
            .arg(SUITE)
            .arg(build)
            .arg(&mirror),
        "debootstrap (set VMTEL_TEST_DEBIAN_MIRROR to use another mirror)",
    );
    run(
        host("chroot").arg(build).args(["apt-get", "clean"]),
        "apt-get clean in the new root",
    );
    let partial = tarball.with_extension("tar.partial");
    run(
        host("tar")
            .arg("--numeric-owner")
            .arg("-cf")
            .arg(&partial)
            .arg("-C")
            .arg(build)
            .arg("."),
        "tar the new root",
    );
    fs::rename(&partial, &tarball).expect("rename the tarball");
    drop(scratch);
    eprintln!(
        "package: debootstrap and tar took {:.1?}; cached in {}",
        t.elapsed(),
        tarball.display()
    );
    tarball
}

/// `$VMTEL_TEST_DEBIAN_MIRROR`, else the Debian archive in the host's apt sources.
fn mirror() -> String {
    if let Some(m) = std::env::var("VMTEL_TEST_DEBIAN_MIRROR")
        .ok()
        .filter(|m| !m.is_empty())
    {
        return m;
    }
    let mut texts = vec![fs::read_to_string("/etc/apt/sources.list").unwrap_or_default()];
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut files: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for f in files {
            let name = f.to_string_lossy().into_owned();
            if name.ends_with(".list") || name.ends_with(".sources") {
                texts.push(fs::read_to_string(&f).unwrap_or_default());
            }
        }
    }
    let uris = texts.iter().flat_map(|t| {
        t.lines().filter_map(|l| {
            let l = l.trim();
            if let Some(rest) = l.strip_prefix("URIs:") {
                return Some(rest.split_whitespace().next()?.to_owned());
            }
            // One-line format: deb [options] URI suite components
            let mut words = l.strip_prefix("deb ")?.split_whitespace();
            let mut uri = words.next()?;
            if uri.starts_with('[') {
                uri = words.find(|w| w.ends_with(']')).and(words.next())?;
            }
            Some(uri.to_owned())
        })
    });
    let debian = uris
        .filter(|u| u.trim_end_matches('/').ends_with("/debian"))
        .collect::<Vec<_>>();
    debian.into_iter().next().unwrap_or_else(|| {
        panic!(
            "no Debian archive (a URI ending in /debian) in /etc/apt/sources.list or \
             /etc/apt/sources.list.d; set VMTEL_TEST_DEBIAN_MIRROR to a Debian mirror"
        )
    })
}

/// An exclusive `flock` on a file, released on drop.
struct Lock {
    _file: fs::File,
}

impl Lock {
    fn take(path: &Path) -> Lock {
        let f = fs::File::create(path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        f.lock()
            .unwrap_or_else(|e| panic!("cannot lock {}: {e}", path.display()));
        Lock { _file: f }
    }
}

/// A directory removed on drop (also when the test panics), after unmounting whatever is mounted
/// below it: debootstrap mounts /proc and /sys in its target while it works.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        unmount_below(&self.0);
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Unmounts every mount point at or below `dir`, deepest first.
fn unmount_below(dir: &Path) {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut below: Vec<PathBuf> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(PathBuf::from)
        .filter(|m| m.starts_with(dir))
        .collect();
    below.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    for m in below {
        let _ = host("umount").arg("--lazy").arg(&m).status();
    }
}

/// An extracted Debian root; removed with the test's temporary directory. The test mounts
/// nothing in it; should a maintainer script have, dropping it unmounts that first.
struct Root(PathBuf);

impl Drop for Root {
    fn drop(&mut self) {
        unmount_below(&self.0);
    }
}

impl Root {
    /// A path inside the root.
    fn path(&self, p: &str) -> PathBuf {
        self.0.join(p.trim_start_matches('/'))
    }

    /// Runs a command in the root (chroot), with a plain environment and no input.
    fn run(&self, args: &[&str]) -> Output {
        host("chroot")
            .arg(&self.0)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", "/root")
            .env("LC_ALL", "C")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run chroot {}: {e}", args.join(" ")))
    }

    /// Like [`Root::run`]; panics with its output unless it succeeded.
    fn ok(&self, args: &[&str], what: &str) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{what} ({}) failed in the root: {}\n{}",
            args.join(" "),
            out.status,
            output_text(&out)
        );
        out
    }

    /// The version of vmtel dpkg has installed.
    fn version(&self) -> String {
        let out = self.ok(
            &["dpkg-query", "-W", "-f=${Version}", "vmtel"],
            "dpkg-query",
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// `systemctl is-enabled vmtel` (systemctl works on the unit files without a running systemd).
    fn unit_state(&self) -> String {
        let out = self.run(&["systemctl", "is-enabled", "vmtel"]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The groups of a user in the root.
    fn groups(&self, user: &str) -> Vec<String> {
        let out = self.ok(&["id", "-Gn", user], "id -Gn");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }
}

/// Where a .deb goes in the root.
fn tmp_name(deb: &Path) -> String {
    format!(
        "/tmp/{}",
        deb.file_name().expect("file name").to_string_lossy()
    )
}

/// Runs a command on the host with no input; panics with its output unless it succeeded.
fn run(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what} ({cmd:?}): {e}"));
    if !out.status.success() {
        panic!(
            "{what} failed: {}\n{:?}\n{}",
            out.status,
            cmd,
            output_text(&out)
        );
    }
    out
}

fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

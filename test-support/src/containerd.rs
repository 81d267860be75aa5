//! A real containerd (Debian's `containerd` and `runc`) for the pod tests: started by the test with a root,
//! state and socket of its own, its CRI plugin serving `runtime.v1` on that socket, CNI from Debian's
//! `containernetworking-plugins` (a bridge of its own, the host its gateway, and host-local addresses, so every pod gets a network
//! namespace of its own under `/run/netns`), and one image, `chaos.test/busybox:1`, built here from Debian's
//! `busybox-static` as an OCI layout and imported with `ctr` (no registry; it is the sandbox image too).
//!
//! Pods are created by the test through the CRI (their cgroups under [`Containerd::cgroup_parent`]). Dropping
//! the fixture stops everything it started however the test ended: every process in its cgroups is killed,
//! containerd and its shims too, the mounts under its root are unmounted, the pods' network namespaces, the
//! bridge and the cgroups are deleted.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::dir::{TempDir, nonce};
use crate::wait::wait_until;

/// The image every pod and container runs.
pub const IMAGE: &str = "chaos.test/busybox:1";
/// The busybox applets the image links (`/bin/NAME`).
const APPLETS: &[&str] = &["sh", "sleep", "httpd", "wget", "cat", "ls", "ps", "kill", "yes", "dd"];

/// A containerd of the test's own.
#[derive(Debug)]
pub struct Containerd {
    dir: TempDir,
    child: Child,
    /// The socket its gRPC (and CRI) API listens on.
    pub socket: PathBuf,
    /// The cgroup parent the test gives its pods (`/chaos-test-NONCE`), in every hierarchy.
    pub cgroup_parent: String,
    /// The CNI bridge on the host.
    pub bridge: String,
    /// The pods' subnet (`10.X.Y.0/24`).
    pub subnet: String,
}

/// Whether this host can run the fixture: the programs, runc, the CNI plugins and busybox.
pub fn available() -> Result<(), String> {
    for program in ["containerd", "containerd-shim-runc-v2", "runc", "ctr", "ip"] {
        crate::skip::program(program)?;
    }
    for file in ["/usr/lib/cni/bridge", "/usr/lib/cni/host-local", "/usr/lib/cni/loopback", "/bin/busybox"] {
        if !Path::new(file).exists() {
            return Err(format!(
                "{file} is missing (apt-get install containernetworking-plugins busybox-static)"
            ));
        }
    }
    Ok(())
}

impl Containerd {
    /// Starts containerd, waits for its socket, imports the image.
    pub fn start() -> Containerd {
        let dir = TempDir::new("containerd");
        let n = nonce();
        let (bridge, subnet) =
            (format!("chaosbr{:x}", n % 0xff_ffff), format!("10.{}.{}.0/24", 100 + n % 100, (n / 100) % 250));
        let socket = dir.path().join("containerd.sock");
        let cni = dir.path().join("cni");
        std::fs::create_dir_all(&cni).unwrap_or_else(|e| panic!("create {}: {e}", cni.display()));
        let conflist = format!(
            r#"{{"cniVersion": "1.0.0", "name": "chaos-test", "plugins": [
                {{"type": "bridge", "bridge": "{bridge}", "isGateway": true, "ipMasq": false,
                  "ipam": {{"type": "host-local", "ranges": [[{{"subnet": "{subnet}"}}]], "dataDir": "{}"}}}},
                {{"type": "loopback"}}]}}"#,
            dir.path().join("ipam").display()
        );
        write(&cni.join("10-chaos-test.conflist"), &conflist);
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{IMAGE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  # The pause sandbox asks for oom_score_adj -998; a test process may not lower its children's score.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
    BinaryName = "{runc}"
"#,
            runc = std::env::var("CHAOS_RUNC").unwrap_or("runc".into()),
            root = dir.path().join("root").display(),
            state = dir.path().join("state").display(),
            socket = socket.display(),
            cni = cni.display(),
        );
        let config_path = dir.path().join("config.toml");
        write(&config_path, &config);
        let log = std::fs::File::create(dir.path().join("containerd.log"))
            .unwrap_or_else(|e| panic!("create containerd.log: {e}"));
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start containerd ({e}): apt-get install containerd runc"));
        let fixture =
            Containerd { dir, child, socket, cgroup_parent: format!("/chaos-test-{n}"), bridge, subnet };
        wait_until("containerd's socket", Duration::from_secs(30), || fixture.socket.exists());
        fixture.import_image();
        fixture
    }

    /// containerd's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// Builds the busybox image as an OCI layout tarball and imports it into the `k8s.io` namespace.
    fn import_image(&self) {
        let work = self.dir.path().join("image");
        let rootfs = work.join("rootfs/bin");
        std::fs::create_dir_all(&rootfs).unwrap_or_else(|e| panic!("create {}: {e}", rootfs.display()));
        std::fs::copy("/bin/busybox", rootfs.join("busybox")).unwrap_or_else(|e| panic!("copy busybox: {e}"));
        for applet in APPLETS {
            std::os::unix::fs::symlink("busybox", rootfs.join(applet))
                .unwrap_or_else(|e| panic!("link {applet}: {e}"));
        }
        // A /tmp as images have one (sticky, world-writable): the pods example fills it.
        let tmp = work.join("rootfs/tmp");
        std::fs::create_dir_all(&tmp).unwrap_or_else(|e| panic!("create {}: {e}", tmp.display()));
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o1777))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", tmp.display()));
        let layer = work.join("layer.tar");
        crate::sh(&[
            "tar",
            "-C",
            &work.join("rootfs").display().to_string(),
            "--numeric-owner",
            "-cf",
            &layer.display().to_string(),
            ".",
        ]);
        let blobs = work.join("oci/blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap_or_else(|e| panic!("create {}: {e}", blobs.display()));
        let add = |bytes: &[u8]| -> (String, usize) {
            let digest = sha256_hex(bytes);
            write_bytes(&blobs.join(&digest), bytes);
            (digest, bytes.len())
        };
        let layer_bytes = std::fs::read(&layer).unwrap_or_else(|e| panic!("read layer.tar: {e}"));
        let (layer_digest, layer_size) = add(&layer_bytes);
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["/bin/sleep","86400"]}},"rootfs":{{"type":"layers","diff_ids":["sha256:{layer_digest}"]}}}}"#
        );
        let (config_digest, config_size) = add(config.as_bytes());
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{config_digest}","size":{config_size}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:{layer_digest}","size":{layer_size}}}]}}"#
        );
        let (manifest_digest, manifest_size) = add(manifest.as_bytes());
        write(
            &work.join("oci/index.json"),
            &format!(
                r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{manifest_digest}","size":{manifest_size},"annotations":{{"io.containerd.image.name":"{IMAGE}","org.opencontainers.image.ref.name":"1"}}}}]}}"#
            ),
        );
        write(&work.join("oci/oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#);
        let tarball = work.join("image.tar");
        crate::sh(&[
            "tar",
            "-C",
            &work.join("oci").display().to_string(),
            "-cf",
            &tarball.display().to_string(),
            ".",
        ]);
        let socket = self.socket.display().to_string();
        let out = Command::new("ctr")
            .args(["-a", &socket, "-n", "k8s.io", "images", "import"])
            .arg(&tarball)
            .output()
            .unwrap_or_else(|e| panic!("cannot run ctr: {e}"));
        assert!(
            out.status.success(),
            "ctr images import failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    /// Every pid in this fixture's cgroups (the pods' processes, and anything a test moved there).
    pub fn pids_in_cgroups(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        for dir in self.cgroup_dirs() {
            if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            }
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// The fixture's cgroup directories in every hierarchy, deepest first.
    fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let relative = self.cgroup_parent.trim_start_matches('/');
        let mut roots = vec![PathBuf::from("/sys/fs/cgroup").join(relative)];
        if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
            roots.extend(entries.flatten().map(|e| e.path().join(relative)));
        }
        let mut dirs = Vec::new();
        for root in roots.into_iter().filter(|r| r.is_dir()) {
            collect_dirs(&root, &mut dirs);
        }
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        dirs
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // The pods' processes first, then containerd and its shims (they name its socket), then what they left.
        for _ in 0..3 {
            for pid in self.pids_in_cgroups() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let socket = self.socket.display().to_string();
        for pid in crate::process::processes_mentioning(&socket) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let root = self.dir.path().display().to_string();
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let mut ours: Vec<&str> =
            mounts.lines().filter_map(|l| l.split(' ').nth(1)).filter(|m| m.starts_with(&root)).collect();
        ours.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for mount in ours {
            let _ = Command::new("umount").args(["-l", mount]).status();
        }
        // Namespaces CNI made for this fixture's pods: those whose bridge port is on our bridge are gone with
        // their pods' processes; the names are found by the veths' peers, so delete every netns holding an
        // address in our subnet.
        let prefix = self.subnet.rsplit_once('.').map(|(p, _)| format!("{p}.")).unwrap_or_default();
        if let Ok(list) = Command::new("ip").args(["netns", "list"]).output() {
            for line in String::from_utf8_lossy(&list.stdout).lines() {
                let Some(name) = line.split_whitespace().next() else { continue };
                if !name.starts_with("cni-") {
                    continue;
                }
                let addrs =
                    Command::new("ip").args(["netns", "exec", name, "ip", "-o", "-4", "addr"]).output();
                if addrs.is_ok_and(|a| String::from_utf8_lossy(&a.stdout).contains(&format!("inet {prefix}")))
                {
                    let _ = Command::new("ip").args(["netns", "delete", name]).status();
                }
            }
        }
        let _ = Command::new("ip").args(["link", "delete", &self.bridge]).stderr(Stdio::null()).status();
        for dir in self.cgroup_dirs() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    out.push(dir.to_path_buf());
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&entry.path(), out);
            }
        }
    }
}

fn write(path: &Path, text: &str) {
    write_bytes(path, text.as_bytes());
}

fn write_bytes(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// The hex SHA-256 of `bytes`, by `sha256sum` (coreutils): the fixture needs no hashing crate.
fn sha256_hex(bytes: &[u8]) -> String {
    use std::io::Write as _;
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run sha256sum: {e}"));
    child
        .stdin
        .take()
        .unwrap_or_else(|| panic!("sha256sum: no stdin"))
        .write_all(bytes)
        .unwrap_or_else(|e| panic!("sha256sum: {e}"));
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("sha256sum: {e}"));
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_string()
}

//! Container ids from cgroup paths (pure), plus the thin cgroupfs helpers the cache needs to
//! map a kernel cgroup id back to a path.
//!
//! Recognised shapes (the id is always 64 lowercase hex digits):
//! - docker, cgroupfs driver: `/docker/<id>`; systemd driver: `/system.slice/docker-<id>.scope`
//! - kubernetes, cgroupfs driver: `/kubepods/burstable/pod<uid>/<id>`; systemd driver:
//!   `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope`
//! - cri-o: `crio-<id>.scope` (or `crio-<id>` with the cgroupfs driver)
//! - podman: `libpod-<id>.scope`, `/machine.slice/libpod-<id>.scope/container`
//!
//! The deepest matching component wins (a docker container running systemd has
//! `/system.slice/docker-<id>.scope/init.scope`; nested containers name the inner one).
//! Everything else, host slices and scopes (`/user.slice/user-1000.slice/session-3.scope`,
//! `/system.slice/sshd.service`) and garbage included, is the host: no id.
//! `crio-conmon-<id>` and `libpod-conmon-<id>` are the runtime's monitor, not the container.
use std::os::unix::fs::{DirEntryExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::procfs::parse_cgroup;

const ID_LEN: usize = 64;
const PREFIXES: [&str; 4] = ["docker-", "cri-containerd-", "crio-", "libpod-"];

fn is_id(s: &str) -> bool {
    s.len() == ID_LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The container id a single path component names, if any.
fn component_id(c: &str) -> Option<&str> {
    let c = c.strip_suffix(".scope").unwrap_or(c);
    if is_id(c) {
        return Some(c);
    }
    PREFIXES
        .iter()
        .filter_map(|p| c.strip_prefix(p))
        .find(|rest| is_id(rest))
}

/// The container id in a cgroup path, or `None` for the host.
pub fn container_id_from_path(path: &str) -> Option<&str> {
    path.rsplit('/').find_map(component_id)
}

/// What the `/proc/<pid>/cgroup` file says about the container.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CgroupContainer {
    /// The container id, empty for the host.
    pub id: String,
    /// The path of the v2 (`0::`) line when there is one.
    pub v2_path: Option<String>,
    /// True when the id (or its absence) follows from the v2 path alone, so every process in
    /// that v2 cgroup has the same answer.
    pub decided_by_v2: bool,
}

/// Reads the container from a whole `/proc/<pid>/cgroup` file: the v2 line first, then the v1
/// lines in file order (`12:pids:/docker/<id>`).
pub fn container_from_cgroup_file(text: &str) -> CgroupContainer {
    let lines = parse_cgroup(text);
    let v2 = lines.iter().find(|l| l.is_v2());
    let v2_path = v2.map(|l| l.path.to_string());
    if let Some(id) = v2.and_then(|l| container_id_from_path(l.path)) {
        return CgroupContainer {
            id: id.to_string(),
            v2_path,
            decided_by_v2: true,
        };
    }
    match lines
        .iter()
        .filter(|l| !l.is_v2())
        .find_map(|l| container_id_from_path(l.path))
    {
        Some(id) => CgroupContainer {
            id: id.to_string(),
            v2_path,
            decided_by_v2: false,
        },
        None => CgroupContainer {
            id: String::new(),
            decided_by_v2: v2_path.is_some(),
            v2_path,
        },
    }
}

/// The cgroup hierarchy the sensor tracks containers by: where it is mounted, and whether a
/// process's cgroup in it decides its container (`pure`). On a pure v2 host that is the v2
/// hierarchy. On a hybrid or v1 host (v1 controllers, maybe `/sys/fs/cgroup/unified` beside
/// them) runtimes place containers in the v1 hierarchies, so the sensor tracks one v1
/// controller's hierarchy (`v1`): eBPF events then carry the id of that cgroup, read in the
/// kernel, and short-lived processes resolve from it like on v2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup2Root {
    pub path: PathBuf,
    pub pure: bool,
    /// The v1 controller whose hierarchy `path` is; `None` for v2.
    pub v1: Option<V1Controller>,
}

/// A v1 controller: its name (`pids`) and its subsystem id (its line in `/proc/cgroups`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Controller {
    pub name: String,
    pub ssid: u32,
}

/// v1 controllers tracked by preference: every container runtime creates the container's
/// cgroup in each of these it finds mounted.
pub const V1_PREFERENCE: [&str; 6] = ["pids", "memory", "cpu", "devices", "freezer", "blkio"];

/// The tracked v1 controller and its mount point, from `/proc/cgroups` (subsystems in id
/// order: `name hierarchy num_cgroups enabled`) and `/proc/self/mountinfo`.
pub fn choose_v1(proc_cgroups: &str, mountinfo: &str) -> Option<(V1Controller, PathBuf)> {
    let subsystems: Vec<(&str, u32, bool)> = proc_cgroups
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let hierarchy = f.get(1).and_then(|h| h.parse().ok()).unwrap_or(0);
            let enabled = f.get(3).is_some_and(|e| *e == "1");
            (f.first().copied().unwrap_or(""), hierarchy, enabled)
        })
        .collect();
    let mounts: Vec<(&str, Vec<&str>)> = mountinfo
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let mut post = post.split_whitespace();
            if post.next()? != "cgroup" {
                return None;
            }
            let opts = post.nth(1)?.split(',').collect();
            Some((pre.split_whitespace().nth(4)?, opts))
        })
        .collect();
    V1_PREFERENCE.iter().find_map(|want| {
        let ssid = subsystems
            .iter()
            .position(|(name, hierarchy, enabled)| name == want && *hierarchy != 0 && *enabled)?;
        let (mount, _) = mounts.iter().find(|(_, opts)| opts.contains(want))?;
        Some((
            V1Controller {
                name: (*want).to_string(),
                ssid: u32::try_from(ssid).ok()?,
            },
            PathBuf::from(unescape_mount(mount)),
        ))
    })
}

/// mountinfo escapes space, tab, newline and backslash as octal (`\040`).
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = (b[i] == b'\\' && i + 3 < b.len())
            .then(|| &b[i + 1..i + 4])
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .map(|d| d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0')))
            .and_then(|v| u8::try_from(v).ok());
        match octal {
            Some(v) => {
                out.push(v);
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The path of `controller`'s line in a `/proc/<pid>/cgroup` file (`8:pids:/docker/<id>`).
pub fn controller_path<'a>(text: &'a str, controller: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, ctls, path) = (parts.next()?, parts.next()?, parts.next()?);
        ctls.split(',').any(|c| c == controller).then_some(path)
    })
}

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

fn is_cgroup2(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: a valid NUL-terminated path and a zeroed out-struct.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == CGROUP2_SUPER_MAGIC
    }
}

/// Finds the cgroup v2 mount under `/sys/fs/cgroup` (unified or hybrid layout).
pub fn find_cgroup2_root() -> Option<Cgroup2Root> {
    let base = Path::new("/sys/fs/cgroup");
    if is_cgroup2(base) {
        return Some(Cgroup2Root {
            path: base.to_path_buf(),
            pure: true,
            v1: None,
        });
    }
    let unified = base.join("unified");
    is_cgroup2(&unified).then_some(Cgroup2Root {
        path: unified,
        pure: false,
        v1: None,
    })
}

/// The hierarchy to track containers by on this host: v2 when it is the only one, else a
/// mounted v1 controller's ([`choose_v1`]), else the hybrid host's unified v2 mount.
pub fn find_tracked_root() -> Option<Cgroup2Root> {
    if let Some(root) = find_cgroup2_root().filter(|r| r.pure) {
        return Some(root);
    }
    let cgroups = std::fs::read_to_string("/proc/cgroups").unwrap_or_default();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    match choose_v1(&cgroups, &mountinfo) {
        Some((v1, path)) => Some(Cgroup2Root {
            path,
            pure: true,
            v1: Some(v1),
        }),
        None => find_cgroup2_root(),
    }
}

/// The cgroup id (the directory's inode number in cgroup v2) of a v2 path.
pub fn cgroup_id_of(root: &Path, v2_path: &str) -> Option<u64> {
    let rel = v2_path.trim_start_matches('/');
    let p = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    std::fs::metadata(p).ok().map(|m| m.ino())
}

/// Most directories visited by one [`find_cgroup_path`] walk.
pub const WALK_LIMIT: usize = 20_000;

/// Finds the v2 path (`/a/b`) of the cgroup whose id is `id` by walking the hierarchy and
/// comparing directory inode numbers (from `getdents`, no `stat` per directory).
pub fn find_cgroup_path(root: &Path, id: u64) -> Option<String> {
    if std::fs::metadata(root).ok()?.ino() == id {
        return Some("/".into());
    }
    let mut stack = vec![(root.to_path_buf(), String::new(), 0usize)];
    let mut visited = 0usize;
    while let Some((dir, rel, depth)) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in rd.flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            visited += 1;
            if visited > WALK_LIMIT {
                return None;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let child_rel = format!("{rel}/{name}");
            if entry.ino() == id {
                return Some(child_rel);
            }
            if depth < 16 {
                stack.push((entry.path(), child_rel, depth + 1));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f1ab8c4e2d9071b5a6c8e4f2d0b9a7c6e5f4d3c2b1a09f8e7d6c5b4a3928170";
    const ID2: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn id(path: &str) -> Option<&str> {
        container_id_from_path(path)
    }

    #[test]
    fn docker_paths() {
        assert_eq!(id(&format!("/docker/{ID}")), Some(ID));
        assert_eq!(id(&format!("/system.slice/docker-{ID}.scope")), Some(ID));
        assert_eq!(
            id(&format!("/system.slice/docker-{ID}.scope/init.scope")),
            Some(ID)
        );
        // docker-in-docker: the inner container.
        assert_eq!(id(&format!("/docker/{ID}/docker/{ID2}")), Some(ID2));
    }

    #[test]
    fn kubernetes_containerd_and_crio_paths() {
        let uid = "pod6b1b2d4a-9d1e-4f5a-8c3b-2a1f0e9d8c7b";
        assert_eq!(id(&format!("/kubepods/burstable/{uid}/{ID}")), Some(ID));
        assert_eq!(id(&format!("/kubepods/{uid}/{ID}")), Some(ID));
        let slice = "/kubepods.slice/kubepods-burstable.slice/\
                     kubepods-burstable-pod6b1b2d4a_9d1e_4f5a_8c3b_2a1f0e9d8c7b.slice";
        assert_eq!(id(&format!("{slice}/cri-containerd-{ID}.scope")), Some(ID));
        assert_eq!(id(&format!("{slice}/crio-{ID}.scope")), Some(ID));
        assert_eq!(
            id(&format!("/kubepods/besteffort/{uid}/crio-{ID}")),
            Some(ID)
        );
        // The pod slice alone (pause container accounting, pod-level cgroup) is not a container.
        assert_eq!(id(slice), None);
        assert_eq!(id(&format!("{slice}/crio-conmon-{ID}.scope")), None);
    }

    #[test]
    fn podman_paths() {
        assert_eq!(id(&format!("/machine.slice/libpod-{ID}.scope")), Some(ID));
        assert_eq!(
            id(&format!("/machine.slice/libpod-{ID}.scope/container")),
            Some(ID)
        );
        assert_eq!(
            id(&format!(
                "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container"
            )),
            Some(ID)
        );
        assert_eq!(
            id(&format!("/machine.slice/libpod-conmon-{ID}.scope")),
            None
        );
    }

    #[test]
    fn host_slices_and_scopes() {
        for p in [
            "/",
            "",
            "/init.scope",
            "/system.slice/sshd.service",
            "/system.slice/docker.service",
            "/system.slice/containerd.service",
            "/user.slice/user-1000.slice/session-3.scope",
            "/user.slice/user-1000.slice/user@1000.service/app.slice/run-r3f1ab8c4e2d9071b5a6c8e4f2d0b9a7c.scope",
            "/machine.slice/machine-qemu\\x2d1\\x2dvm.scope",
            "/process_api/c4a87af020d161cdb59a305caafd025b",
        ] {
            assert_eq!(id(p), None, "{p}");
        }
    }

    #[test]
    fn garbage() {
        let upper = ID.to_uppercase();
        let short = &ID[..63];
        let long = format!("{ID}0");
        for p in [
            "not a path",
            "::::",
            "/docker/xyz",
            &format!("/docker/{upper}"),
            &format!("/docker/{short}"),
            &format!("/docker/{long}"),
            &format!("/system.slice/docker-{short}.scope"),
            &format!("/system.slice/foo-{ID}.scope"),
            &format!("/system.slice/docker-{ID}.scopex"),
            &format!("/docker/{ID}\u{fffd}"),
            "\u{0}\u{1}/\u{7f}",
        ] {
            assert_eq!(id(p), None, "{p:?}");
        }
    }

    #[test]
    fn cgroup_file_v2() {
        let c = container_from_cgroup_file(&format!("0::/system.slice/docker-{ID}.scope\n"));
        assert_eq!(c.id, ID);
        assert!(c.decided_by_v2);
        let c = container_from_cgroup_file("0::/user.slice/user-0.slice/session-1.scope\n");
        assert_eq!(c.id, "");
        assert!(c.decided_by_v2);
        assert_eq!(
            c.v2_path.as_deref(),
            Some("/user.slice/user-0.slice/session-1.scope")
        );
    }

    #[test]
    fn cgroup_file_v1_and_hybrid() {
        // v1 only.
        let text =
            format!("12:pids:/docker/{ID}\n11:memory:/docker/{ID}\n1:name=systemd:/docker/{ID}\n");
        let c = container_from_cgroup_file(&text);
        assert_eq!(
            (c.id.as_str(), c.decided_by_v2, c.v2_path),
            (ID, false, None)
        );
        // hybrid with the cgroupfs driver: the v2 line is the host's, v1 names the container.
        let text = format!("4:memory:/docker/{ID}\n1:name=systemd:/docker/{ID}\n0::/\n");
        let c = container_from_cgroup_file(&text);
        assert_eq!((c.id.as_str(), c.decided_by_v2), (ID, false));
        // hybrid host process (this machine's shape).
        let text =
            "9:name=systemd:/\n4:memory:/process_api/c4a87af020d161cdb59a305caafd025b\n0::/\n";
        let c = container_from_cgroup_file(text);
        assert_eq!((c.id.as_str(), c.decided_by_v2), ("", true));
    }

    const PROC_CGROUPS: &str = "#subsys_name\thierarchy\tnum_cgroups\tenabled
cpuset\t3\t1\t1
cpu\t1\t1\t1
cpuacct\t2\t1\t1
blkio\t7\t1\t1
memory\t4\t61\t1
devices\t5\t1\t1
freezer\t6\t1\t1
net_cls\t0\t1\t1
perf_event\t0\t1\t1
net_prio\t0\t1\t1
hugetlb\t0\t1\t1
pids\t8\t1\t1
";
    const MOUNTINFO: &str = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn chooses_the_v1_pids_hierarchy_on_a_hybrid_host() {
        let (c, path) = choose_v1(PROC_CGROUPS, MOUNTINFO).unwrap();
        assert_eq!((c.name.as_str(), c.ssid), ("pids", 11));
        assert_eq!(path, PathBuf::from("/sys/fs/cgroup/pids"));
        // pids not mounted: the next preference that is.
        let no_pids = MOUNTINFO.replace("rw,pids", "rw,xpids");
        let (c, path) = choose_v1(PROC_CGROUPS, &no_pids).unwrap();
        assert_eq!((c.name.as_str(), c.ssid), ("memory", 4));
        assert_eq!(path, PathBuf::from("/sys/fs/cgroup/memory"));
        // Co-mounted controllers (cpu,cpuacct) and an escaped mount point.
        let co = "32 31 0:29 / /sys/fs/cgroup/cpu\\040x rw - cgroup cgroup rw,cpu,cpuacct\n";
        let only_cpu = PROC_CGROUPS
            .replace("pids\t8", "pids\t0")
            .replace("memory\t4", "memory\t0");
        let (c, path) = choose_v1(&only_cpu, co).unwrap();
        assert_eq!((c.name.as_str(), c.ssid), ("cpu", 1));
        assert_eq!(path, PathBuf::from("/sys/fs/cgroup/cpu x"));
        // Pure v2 (no v1 hierarchy), and garbage.
        let v2 = "#subsys_name\thierarchy\tnum_cgroups\tenabled\npids\t0\t1\t1\nmemory\t0\t1\t1\n";
        assert_eq!(choose_v1(v2, MOUNTINFO), None);
        assert_eq!(choose_v1("", ""), None);
        assert_eq!(choose_v1("pids x y z\n:::\n", "garbage - cgroup\n"), None);
    }

    #[test]
    fn controller_line_of_a_cgroup_file() {
        let text = format!("9:name=systemd:/\n8:pids:/docker/{ID}\n1:cpu,cpuacct:/a\n0::/\n");
        assert_eq!(
            controller_path(&text, "pids"),
            Some(format!("/docker/{ID}").as_str())
        );
        assert_eq!(controller_path(&text, "cpuacct"), Some("/a"));
        assert_eq!(controller_path(&text, "memory"), None);
        assert_eq!(controller_path("garbage\n::\n", "pids"), None);
    }

    #[test]
    fn cgroup_file_garbage() {
        for text in ["", "garbage", "\n\n", "x:y\n", "0:/docker\n", "::::::\n"] {
            assert_eq!(container_from_cgroup_file(text).id, "", "{text:?}");
        }
    }

    #[test]
    fn walk_finds_directory_by_inode() {
        let root = std::env::temp_dir().join(format!("enrich-cg-{}", std::process::id()));
        let leaf = root.join("a").join(format!("docker-{ID}.scope"));
        std::fs::create_dir_all(&leaf).unwrap();
        std::fs::create_dir_all(root.join("b/c")).unwrap();
        let ino = std::fs::metadata(&leaf).unwrap().ino();
        let path = find_cgroup_path(&root, ino).unwrap();
        assert_eq!(path, format!("/a/docker-{ID}.scope"));
        assert_eq!(cgroup_id_of(&root, &path), Some(ino));
        assert_eq!(container_id_from_path(&path), Some(ID));
        let root_ino = std::fs::metadata(&root).unwrap().ino();
        assert_eq!(find_cgroup_path(&root, root_ino).as_deref(), Some("/"));
        assert_eq!(cgroup_id_of(&root, "/"), Some(root_ino));
        assert_eq!(find_cgroup_path(&root, 1), None);
        std::fs::remove_dir_all(&root).unwrap();
    }
}

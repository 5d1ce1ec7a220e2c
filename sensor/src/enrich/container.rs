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

/// Where cgroup v2 is mounted, and whether it is the only hierarchy (`pure`): then the v2
/// cgroup of a process decides its container. On a hybrid host (v1 controllers plus
/// `/sys/fs/cgroup/unified`) a runtime may place containers in v1 hierarchies only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup2Root {
    pub path: PathBuf,
    pub pure: bool,
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
        });
    }
    let unified = base.join("unified");
    is_cgroup2(&unified).then_some(Cgroup2Root {
        path: unified,
        pure: false,
    })
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

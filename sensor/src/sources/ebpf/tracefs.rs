//! tracefs lookup and tracepoint `format` parsing (for context field offsets).
use std::path::{Path, PathBuf};

const CANDIDATES: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// The mounted tracefs directory that has the `sched_process_exec` event, if any.
pub fn find() -> Option<PathBuf> {
    CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.join("events/sched/sched_process_exec").exists())
}

/// Offset of `field` in a tracepoint `format` file's text.
///
/// Lines look like `\tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:0;`.
pub fn field_offset(format: &str, field: &str) -> Option<u32> {
    format.lines().find_map(|line| {
        let decl = line.trim().strip_prefix("field:")?;
        let (decl, rest) = decl.split_once(';')?;
        let name = decl.trim().rsplit([' ', '*']).next()?;
        let name = name.split('[').next()?;
        if name != field {
            return None;
        }
        let off = rest
            .split(';')
            .find_map(|kv| kv.trim().strip_prefix("offset:"))?;
        off.trim().parse().ok()
    })
}

/// Reads the format of `category/name` under `tracefs` and returns the offset of `field`.
pub fn event_field_offset(
    tracefs: &Path,
    category: &str,
    name: &str,
    field: &str,
) -> Result<u32, String> {
    let path = tracefs
        .join("events")
        .join(category)
        .join(name)
        .join("format");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    field_offset(&text, field).ok_or_else(|| format!("{}: no field `{field}`", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXEC_FORMAT: &str = "name: sched_process_exec\nID: 318\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:0;\n\tfield:pid_t pid;\toffset:12;\tsize:4;\tsigned:1;\n\tfield:pid_t old_pid;\toffset:16;\tsize:4;\tsigned:1;\n\nprint fmt: \"filename=%s pid=%d old_pid=%d\", __get_str(filename), REC->pid, REC->old_pid\n";

    #[test]
    fn finds_fields() {
        assert_eq!(field_offset(EXEC_FORMAT, "filename"), Some(8));
        assert_eq!(field_offset(EXEC_FORMAT, "old_pid"), Some(16));
        assert_eq!(field_offset(EXEC_FORMAT, "common_pid"), Some(4));
        assert_eq!(field_offset(EXEC_FORMAT, "missing"), None);
        assert_eq!(
            field_offset("field:char comm[16];\toffset:24;\tsize:16;", "comm"),
            Some(24)
        );
        assert_eq!(
            field_offset(
                "field:struct sockaddr * uservaddr;\toffset:24;",
                "uservaddr"
            ),
            Some(24)
        );
        assert_eq!(
            field_offset("garbage\nfield:\nfield:int x;offset:zz;", "x"),
            None
        );
    }

    #[test]
    fn host_format_if_present() {
        if let Some(t) = find() {
            assert!(event_field_offset(&t, "sched", "sched_process_exec", "filename").is_ok());
        }
    }
}

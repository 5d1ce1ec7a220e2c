//! The argv bound, the same in both modes: a command line longer than the bound keeps its
//! head and its last [`ARGV_TAIL`] bytes, and says how many bytes were left out between them,
//! so padding cannot push the part that matters out of sight. Pure functions.
pub use sensor_common::{ARGV_LEN as ARGV_MAX_BOUND, ARGV_MIN_BOUND, ARGV_TAIL};

/// The default bound (`sensor.argv_max_bytes`).
pub const DEFAULT_BOUND: usize = ARGV_MAX_BOUND;

/// A NUL-separated argv area (`arg\0arg\0`) cut to a bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut<'a> {
    pub head: &'a [u8],
    pub tail: &'a [u8],
    /// Bytes left out between head and tail (0: `head` is the whole area, `tail` empty).
    pub omitted: usize,
}

/// Cuts `area` to `bound` bytes as the kernel program does.
pub fn cut(area: &[u8], bound: usize) -> Cut<'_> {
    let bound = bound.clamp(ARGV_MIN_BOUND, ARGV_MAX_BOUND);
    if area.len() <= bound {
        return Cut {
            head: area,
            tail: &[],
            omitted: 0,
        };
    }
    let head = bound - ARGV_TAIL;
    let tail_at = area.len() - ARGV_TAIL;
    Cut {
        head: &area[..head],
        tail: &area[tail_at..],
        omitted: tail_at - head,
    }
}

/// The text that stands where bytes were left out.
pub fn omitted_marker(omitted: usize) -> Vec<u8> {
    format!("[... {omitted} bytes omitted ...]").into_bytes()
}

/// The argument list of a cut area. A complete area gives its arguments. A cut one gives the
/// head's arguments (the last one partial), a marker naming the bytes left out, then the tail's
/// arguments (the first one partial). `head_cut` says the head alone was cut (no tail known).
pub fn to_list(head: &[u8], tail: &[u8], omitted: usize, head_cut: bool) -> Vec<Vec<u8>> {
    let mut args = split(head, head_cut || omitted > 0);
    if omitted > 0 {
        args.push(omitted_marker(omitted));
        let mut tail_args = split(tail, false);
        if tail.first() == Some(&0) {
            // The cut fell right after an argument's end: the tail starts with a whole one.
            tail_args.remove(0);
        }
        args.extend(tail_args);
    }
    args
}

/// Splits `arg\0arg\0`. Each argument ends with a NUL; an empty argument is a lone NUL. When
/// `cut`, the bytes after the last NUL are a partial argument (kept when non-empty).
fn split(area: &[u8], cut: bool) -> Vec<Vec<u8>> {
    if area.is_empty() {
        return Vec::new();
    }
    let mut args: Vec<Vec<u8>> = area.split(|&b| b == 0).map(<[u8]>::to_vec).collect();
    if area.ends_with(&[0]) || (cut && args.last().is_some_and(Vec::is_empty)) {
        args.pop();
    }
    args
}

/// Joins arguments into the area a process's memory holds.
pub fn join(args: &[Vec<u8>]) -> Vec<u8> {
    let mut area = Vec::with_capacity(args.iter().map(|a| a.len() + 1).sum());
    for a in args {
        area.extend_from_slice(a);
        area.push(0);
    }
    area
}

/// Audit mode: the kernel's whole argv, cut to the same bound. Returns (list, omitted bytes,
/// cut) where `cut` says anything was left out.
pub fn bound_list(args: Vec<Vec<u8>>, bound: usize) -> (Vec<Vec<u8>>, usize, bool) {
    let area = join(&args);
    let c = cut(&area, bound);
    if c.omitted == 0 {
        return (args, 0, false);
    }
    (to_list(c.head, c.tail, c.omitted, true), c.omitted, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strs(v: &[Vec<u8>]) -> Vec<String> {
        v.iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect()
    }

    #[test]
    fn short_argv_is_whole() {
        let area = b"sh\0-c\0true\0";
        let c = cut(area, 4096);
        assert_eq!((c.head, c.omitted), (&area[..], 0));
        assert_eq!(
            strs(&to_list(c.head, c.tail, 0, false)),
            ["sh", "-c", "true"]
        );
    }

    #[test]
    fn padded_argv_keeps_the_payload_at_the_end() {
        // sh -c '<6,000 spaces>true payload' with a 4 KiB bound: the payload survives.
        let script = format!("{}true payload", " ".repeat(6000));
        let args = vec![b"sh".to_vec(), b"-c".to_vec(), script.clone().into_bytes()];
        let area = join(&args);
        let c = cut(&area, 4096);
        assert_eq!(c.head.len(), 4096 - ARGV_TAIL);
        assert_eq!(c.tail.len(), ARGV_TAIL);
        assert_eq!(c.omitted, area.len() - 4096);
        let list = strs(&to_list(c.head, c.tail, c.omitted, false));
        assert_eq!(list[0], "sh");
        assert_eq!(list[1], "-c");
        assert_eq!(list[3], format!("[... {} bytes omitted ...]", c.omitted));
        assert!(list[4].ends_with("true payload"), "{:?}", list[4]);
        assert_eq!(list.len(), 5);
    }

    #[test]
    fn many_arguments_keep_the_last_ones() {
        let mut args: Vec<Vec<u8>> = (0..60).map(|i| vec![b'a' + (i % 26) as u8; 100]).collect();
        args.insert(0, b"prog".to_vec());
        args.push(b"--exfil=http://x".to_vec());
        let (list, omitted, cut) = bound_list(args.clone(), 4096);
        assert!(cut);
        assert_eq!(omitted, join(&args).len() - 4096);
        let list = strs(&list);
        assert_eq!(list.last().unwrap(), "--exfil=http://x");
        assert_eq!(list[0], "prog");
        // Within the default 32 KiB bound the same argv is whole.
        let (list, omitted, cut) = bound_list(args.clone(), DEFAULT_BOUND);
        assert_eq!((list, omitted, cut), (args, 0, false));
    }

    #[test]
    fn cut_on_an_argument_boundary_has_no_empty_partials() {
        // The tail starts exactly at an argument.
        let mut args = vec![vec![b'x'; 5000 - 1]];
        args.push(vec![b'y'; ARGV_TAIL - 1]);
        let area = join(&args);
        let c = cut(&area, 4096);
        assert_eq!(c.tail, &area[area.len() - ARGV_TAIL..]);
        let list = to_list(c.head, c.tail, c.omitted, false);
        assert_eq!(list.len(), 3);
        assert_eq!(list[2], vec![b'y'; ARGV_TAIL - 1]);
    }

    #[test]
    fn bound_is_clamped() {
        let area = vec![b'a'; 100_000];
        assert_eq!(cut(&area, 10).head.len(), ARGV_MIN_BOUND - ARGV_TAIL);
        assert_eq!(cut(&area, 1 << 30).head.len(), ARGV_MAX_BOUND - ARGV_TAIL);
    }
}

//! An error and all its sources on one line, `a: b: c`, for logs and health reasons. A
//! source whose text the line already holds is not repeated (many errors print their source).

pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("cannot connect")]
        Plain(#[source] std::io::Error),
        #[error("cannot bind: {0}")]
        Repeats(#[source] std::io::Error),
    }

    #[test]
    fn sources_are_joined_once() {
        // ECONNREFUSED on Linux.
        let io = || std::io::Error::from_raw_os_error(111);
        let e = Outer::Plain(io());
        assert_eq!(error_chain(&e), format!("cannot connect: {}", io()));
        let e = Outer::Repeats(io());
        assert_eq!(error_chain(&e), format!("cannot bind: {}", io()));
    }
}

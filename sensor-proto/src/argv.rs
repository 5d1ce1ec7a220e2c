//! Building an [`Argv`] from its arguments (not cut, nothing omitted), as capture paths and
//! tests do: `args.into_iter().collect()` or `vec![..].into()`.
use crate::v1::Argv;

impl FromIterator<String> for Argv {
    fn from_iter<I: IntoIterator<Item = String>>(iter: I) -> Self {
        Argv {
            args: iter.into_iter().collect(),
            truncated: false,
            omitted_bytes: 0,
        }
    }
}

impl From<Vec<String>> for Argv {
    fn from(args: Vec<String>) -> Self {
        Argv {
            args,
            truncated: false,
            omitted_bytes: 0,
        }
    }
}

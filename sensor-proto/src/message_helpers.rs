//! Small conveniences on the generated messages that capture paths and tests share: building
//! an [`Argv`] from its arguments (not cut, nothing omitted), and asking a [`Process`]
//! whether a field is listed in `incomplete` and what its arguments are.
use crate::v1::{Argv, Process};

impl FromIterator<String> for Argv {
    fn from_iter<I: IntoIterator<Item = String>>(iter: I) -> Self {
        Argv::from(iter.into_iter().collect::<Vec<_>>())
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

impl Process {
    /// Whether `field` is named in `incomplete` (the source could not obtain it).
    pub fn is_incomplete(&self, field: &str) -> bool {
        self.incomplete.iter().any(|f| f == field)
    }

    /// The arguments of `argv`, when the process has one.
    pub fn args(&self) -> Option<&[String]> {
        self.argv.as_ref().map(|a| a.args.as_slice())
    }
}

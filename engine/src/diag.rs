//! Errors that point into a file: `path:line:column: message`, as editors and learners expect.

use std::ops::Range;
use std::path::{Path, PathBuf};

/// A problem at a place in a file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[error("{}:{line}:{column}: {message}", path.display())]
pub struct FileError {
    pub path: PathBuf,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    pub message: String,
}

impl FileError {
    /// Locate byte offset `span.start` of `src` (the text of `path`).
    pub fn at(
        path: &Path,
        src: &str,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) -> FileError {
        let (line, column) = match span {
            Some(s) => line_col(src, s.start),
            None => (1, 1),
        };
        FileError {
            path: path.to_path_buf(),
            line,
            column,
            message: message.into(),
        }
    }

    /// Turn a TOML parse/deserialize error into one that names file, line and column, keeping
    /// the parser's own words about what it expected.
    pub fn from_toml(path: &Path, src: &str, err: &toml::de::Error) -> FileError {
        FileError::at(path, src, err.span(), err.message().trim().to_string())
    }
}

/// 1-based line and column of byte `offset` in `src`.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = src[line_start..offset].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let s = "a = 1\nbb = 2\n";
        assert_eq!(line_col(s, 0), (1, 1));
        assert_eq!(line_col(s, 6), (2, 1));
        assert_eq!(line_col(s, 8), (2, 3));
    }

    #[test]
    fn toml_errors_name_the_place() {
        let src = "a = 1\nb = \n";
        let err = toml::from_str::<toml::Table>(src).unwrap_err();
        let fe = FileError::from_toml(Path::new("x.toml"), src, &err);
        assert_eq!((fe.line, fe.path.to_str().unwrap()), (2, "x.toml"));
        assert!(fe.to_string().starts_with("x.toml:2:"), "{fe}");
    }
}

//! `ConfigError`: what is wrong, in which file, on which line.
//!
//! Owns the error type, its `file:line: message` display and the mapping of a
//! byte span of the config text to its line. Calls nothing else in `config`.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A configuration error with its position in the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line, 0 when the error is not tied to a place in the file.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
        } else {
            write!(f, "{}: {}", self.file.display(), self.message)
        }
    }
}

impl ConfigError {
    /// The error `message` at `span` of `text`, the contents of `file`. The
    /// empty span `0..0` (a default value, a whole-file rule) has no line.
    pub(super) fn at(
        file: &Path,
        text: &str,
        span: Range<usize>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: file.to_path_buf(),
            line: line_of(text, &span),
            message: message.into(),
        }
    }
}

/// The 1-based line `span` starts on, 0 for the empty span `0..0`.
fn line_of(text: &str, span: &Range<usize>) -> usize {
    if span.start == 0 && span.end == 0 {
        return 0;
    }
    let end = span.start.min(text.len());
    text[..end].bytes().filter(|&b| b == b'\n').count() + 1
}

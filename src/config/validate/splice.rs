//! `[splice]`: the settings of spliced connections (SYN-proxy units).
//!
//! Owns the rules for the splice table's capacity, the connect timeout, SYN
//! retries and connect attempts, farmlb's window scale, the kept bytes per
//! connection and per worker (the first never above the second), the
//! SYN cookie's secret file and rotation period, and the HTTP units' client
//! timeout; the keys a file leaves out
//! keep `Splice::default()`. The secret file is the only file besides the
//! config itself that validation reads: at load, relative to the config
//! file's directory, a regular file of `Splice::MIN_SECRET_LEN..=
//! Splice::MAX_SECRET_LEN` bytes taken as they are. Calls only the
//! `Validator` for the error's line.

use std::io::Read;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::Validator;
use crate::config::error::ConfigError;
use crate::config::model::Splice;
use crate::config::schema::SpliceConfig;

impl Validator<'_> {
    pub(super) fn splice(&self, s: &SpliceConfig) -> Result<Splice, ConfigError> {
        let d = Splice::default();
        let capacity = self.splice_int(&s.capacity, "capacity", 1..=Splice::MAX_CAPACITY)?;
        let connect_timeout = self.splice_duration(
            &s.connect_timeout,
            "connect_timeout",
            Splice::MIN_CONNECT_TIMEOUT..=Splice::MAX_CONNECT_TIMEOUT,
        )?;
        let syn_retries =
            self.splice_int(&s.syn_retries, "syn_retries", 0..=Splice::MAX_SYN_RETRIES)?;
        let connect_attempts = self.splice_int(
            &s.connect_attempts,
            "connect_attempts",
            1..=Splice::MAX_CONNECT_ATTEMPTS,
        )?;
        let window_scale = self.splice_int(
            &s.window_scale,
            "window_scale",
            0..=Splice::MAX_WINDOW_SCALE,
        )?;
        let kept_bytes =
            self.splice_int(&s.kept_bytes, "kept_bytes", 0..=Splice::MAX_KEPT_BYTES)?;
        let kept_bytes_per_worker = self.splice_int(
            &s.kept_bytes_per_worker,
            "kept_bytes_per_worker",
            0..=Splice::MAX_KEPT_BYTES_PER_WORKER,
        )?;
        let kept_bytes = kept_bytes.unwrap_or(d.kept_bytes);
        let kept_bytes_per_worker = kept_bytes_per_worker.unwrap_or(d.kept_bytes_per_worker);
        if kept_bytes_per_worker < u64::from(kept_bytes) {
            // Only a set kept_bytes_per_worker can be below kept_bytes: the
            // default is above the largest kept_bytes.
            let span = s.kept_bytes_per_worker.as_ref().map_or(0..0, |v| v.span());
            return Err(self.err(
                span,
                format!(
                    "splice kept_bytes_per_worker {kept_bytes_per_worker} is below kept_bytes {kept_bytes}: not even one connection's bytes would fit"
                ),
            ));
        }
        let cookie_secret = match &s.cookie_secret_file {
            None => None,
            Some(f) => Some(self.cookie_secret(f)?),
        };
        let cookie_period = self.splice_duration(
            &s.cookie_period,
            "cookie_period",
            Splice::MIN_COOKIE_PERIOD..=Splice::MAX_COOKIE_PERIOD,
        )?;
        let client_timeout = self.splice_duration(
            &s.client_timeout,
            "client_timeout",
            Splice::MIN_CLIENT_TIMEOUT..=Splice::MAX_CLIENT_TIMEOUT,
        )?;
        Ok(Splice {
            capacity: capacity.unwrap_or(d.capacity),
            connect_timeout: connect_timeout.unwrap_or(d.connect_timeout),
            syn_retries: syn_retries.unwrap_or(d.syn_retries),
            connect_attempts: connect_attempts.unwrap_or(d.connect_attempts),
            window_scale: window_scale.unwrap_or(d.window_scale),
            kept_bytes,
            kept_bytes_per_worker,
            cookie_secret,
            cookie_period: cookie_period.unwrap_or(d.cookie_period),
            client_timeout: client_timeout.unwrap_or(d.client_timeout),
        })
    }

    /// The integer `v` of the key `what`, when set, within `range`.
    fn splice_int<T>(
        &self,
        v: &Option<Spanned<u64>>,
        what: &str,
        range: RangeInclusive<T>,
    ) -> Result<Option<T>, ConfigError>
    where
        T: Copy + std::fmt::Display + Into<u64> + TryFrom<u64>,
    {
        let Some(v) = v else {
            return Ok(None);
        };
        let n = *v.get_ref();
        let (lo, hi) = (*range.start(), *range.end());
        match T::try_from(n) {
            Ok(t) if (lo.into()..=hi.into()).contains(&n) => Ok(Some(t)),
            _ => Err(self.err(v.span(), format!("splice {what} {n} is not {lo}..={hi}"))),
        }
    }

    /// The duration `v` of the key `what`, when set, within `range`.
    fn splice_duration(
        &self,
        v: &Option<Spanned<String>>,
        what: &str,
        range: RangeInclusive<Duration>,
    ) -> Result<Option<Duration>, ConfigError> {
        let Some(v) = v else {
            return Ok(None);
        };
        let d = humantime::parse_duration(v.get_ref().trim()).map_err(|e| {
            self.err(
                v.span(),
                format!(
                    "splice {what} '{}' is not a duration like \"3s\" or \"500ms\": {e}",
                    v.get_ref()
                ),
            )
        })?;
        if !range.contains(&d) {
            return Err(self.err(
                v.span(),
                format!(
                    "splice {what} '{}' is not between {} and {}",
                    v.get_ref(),
                    humantime::format_duration(*range.start()),
                    humantime::format_duration(*range.end())
                ),
            ));
        }
        Ok(Some(d))
    }

    /// The secret in the file `f` names, relative to the config file's
    /// directory: a regular file of `MIN_SECRET_LEN..=MAX_SECRET_LEN` bytes.
    fn cookie_secret(&self, f: &Spanned<String>) -> Result<Vec<u8>, ConfigError> {
        let name = f.get_ref();
        if name.trim().is_empty() {
            return Err(self.err(f.span(), "splice cookie_secret_file is empty"));
        }
        let path = self.beside_config(Path::new(name));
        let fail = |why: String| {
            self.err(
                f.span(),
                format!("splice cookie_secret_file '{}' {why}", path.display()),
            )
        };
        let file = std::fs::File::open(&path).map_err(|e| fail(format!("cannot be read: {e}")))?;
        let meta = file
            .metadata()
            .map_err(|e| fail(format!("cannot be read: {e}")))?;
        if !meta.is_file() {
            return Err(fail("is not a regular file".to_string()));
        }
        // Bounded, whatever the file claims to be.
        let mut secret = Vec::new();
        file.take(Splice::MAX_SECRET_LEN as u64 + 1)
            .read_to_end(&mut secret)
            .map_err(|e| fail(format!("cannot be read: {e}")))?;
        let (min, max) = (Splice::MIN_SECRET_LEN, Splice::MAX_SECRET_LEN);
        if secret.len() > max {
            return Err(fail(format!(
                "holds more than {max} bytes; a SYN cookie secret is {min}..={max} bytes"
            )));
        }
        if secret.len() < min {
            return Err(fail(format!(
                "holds {} bytes; a SYN cookie secret needs at least {min}",
                secret.len()
            )));
        }
        Ok(secret)
    }

    /// `p` as it is when absolute, else relative to the config file's
    /// directory.
    fn beside_config(&self, p: &Path) -> PathBuf {
        match self.file.parent() {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p.to_path_buf(),
        }
    }
}

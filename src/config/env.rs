//! Reading variables: [`Env`] parses each through `FromStr` (with a default,
//! optional, a list, a boolean, a delay list, a plain prefix) into a
//! [`ConfigError`] that names the variable when the value is bad.

use std::{fmt, str::FromStr, time::Duration};

use super::{ConfigError, Secret};

/// The variables, as a lookup (the process environment, or a test's map).
pub(super) struct Env<'a, F: Fn(&str) -> Option<String>>(pub(super) &'a F);

impl<F: Fn(&str) -> Option<String>> Env<'_, F> {
    pub(super) fn raw(&self, var: &str) -> Option<String> {
        (self.0)(var)
    }

    pub(super) fn parse<T: FromStr>(&self, var: &'static str, value: &str) -> Result<T, ConfigError>
    where
        T::Err: fmt::Display,
    {
        value.trim().parse().map_err(|e| ConfigError {
            var,
            message: format!("`{value}`: {e}"),
        })
    }

    pub(super) fn or<T: FromStr>(&self, var: &'static str, default: &str) -> Result<T, ConfigError>
    where
        T::Err: fmt::Display,
    {
        let value = self.raw(var).unwrap_or_else(|| default.to_owned());
        self.parse(var, &value)
    }

    pub(super) fn optional<T: FromStr>(&self, var: &'static str) -> Result<Option<T>, ConfigError>
    where
        T::Err: fmt::Display,
    {
        match self.raw(var).filter(|v| !v.trim().is_empty()) {
            Some(value) => self.parse(var, &value).map(Some),
            None => Ok(None),
        }
    }

    /// A secret that, when set, is not empty.
    pub(super) fn secret(&self, var: &'static str) -> Result<Option<Secret>, ConfigError> {
        match self.raw(var) {
            Some(value) if value.is_empty() => Err(ConfigError {
                var,
                message: "must not be empty".into(),
            }),
            value => Ok(value.map(Secret::new)),
        }
    }

    /// A secret parsed through `FromStr`; unlike [`Env::parse`], the error
    /// never repeats the value.
    pub(super) fn secret_parsed<T: FromStr>(
        &self,
        var: &'static str,
    ) -> Result<Option<T>, ConfigError>
    where
        T::Err: fmt::Display,
    {
        match self.raw(var) {
            None => Ok(None),
            Some(value) if value.trim().is_empty() => Err(ConfigError {
                var,
                message: "must not be empty".into(),
            }),
            Some(value) => value.parse::<T>().map(Some).map_err(|e| ConfigError {
                var,
                message: e.to_string(),
            }),
        }
    }

    pub(super) fn list<T: FromStr>(&self, var: &'static str) -> Result<Vec<T>, ConfigError>
    where
        T::Err: fmt::Display,
    {
        self.raw(var)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| self.parse(var, item))
            .collect()
    }

    /// A comma-separated list of delays in milliseconds, `default` if unset.
    pub(super) fn delays(
        &self,
        var: &'static str,
        default: &[u64],
    ) -> Result<crate::queue::RetryPolicy, ConfigError> {
        let ms = self.list::<u64>(var)?;
        let ms = if ms.is_empty() { default.to_vec() } else { ms };
        Ok(crate::queue::RetryPolicy {
            delays: ms.into_iter().map(Duration::from_millis).collect(),
        })
    }

    pub(super) fn bool(&self, var: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.raw(var).as_deref().map(str::trim) {
            None => Ok(default),
            Some("true" | "1" | "yes") => Ok(true),
            Some("false" | "0" | "no") => Ok(false),
            Some(other) => Err(ConfigError {
                var,
                message: format!("`{other}` is not true or false"),
            }),
        }
    }

    /// Queue and key prefixes end up in broker and Redis names: keep them plain.
    pub(super) fn prefix(&self, var: &'static str) -> Result<String, ConfigError> {
        let value = self.raw(var).unwrap_or_else(|| "payorch".into());
        let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
        if value.is_empty() || value.len() > 64 || !value.chars().all(plain) {
            return Err(ConfigError {
                var,
                message: format!("`{value}` must be 1 to 64 of A-Z a-z 0-9 _ - ."),
            });
        }
        Ok(value)
    }
}

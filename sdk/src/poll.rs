//! Waiting until something holds, bounded by a timeout: a URL that answers
//! as expected, a reload's old nginx workers gone, a name that resolves to
//! the new addresses. Never a fixed sleep.
//!
//! ```no_run
//! // Until the URL answers 200 with `ok` in its body, for at most 20 s.
//! let answer = slipway_sdk::poll::url("http://nginx:80/health")
//!     .timeout_ms(20_000)
//!     .answers(200, Some("ok"))
//!     .map_err(|gave_up| format!("never healthy: last answer `{}`", gave_up.last))?;
//! slipway_sdk::info!("healthy on attempt {}", answer.attempt);
//! # Ok::<(), String>(())
//! ```

use crate::probe::{self, HttpResponse};
use std::time::{Duration, Instant};

/// Call `attempt` with its number (from 1) until it returns `Some`, every
/// `every_ms`, for at most `timeout_ms` (and at least once; the last attempt
/// is made at the deadline). `Ok(None)` means time ran out; an `Err` from
/// `attempt` ends the wait at once.
pub fn until<T>(
    timeout_ms: u32,
    every_ms: u32,
    mut attempt: impl FnMut(u32) -> Result<Option<T>, String>,
) -> Result<Option<T>, String> {
    let deadline = Instant::now() + Duration::from_millis(timeout_ms.into());
    let every = Duration::from_millis(every_ms.max(1).into());
    let mut n = 0;
    loop {
        n += 1;
        if let Some(done) = attempt(n)? {
            return Ok(Some(done));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        std::thread::sleep(every.min(left));
    }
}

/// `GET url` until it answers as wanted; see [`Url::until`].
pub fn url(url: &str) -> Url<'_> {
    Url {
        url,
        timeout_ms: 20_000,
        every_ms: 100,
        request_timeout_ms: 2_000,
    }
}

/// A URL to poll. Defaults: 20 s in all, a request every 100 ms, 2 s each.
#[derive(Debug, Clone)]
pub struct Url<'a> {
    url: &'a str,
    timeout_ms: u32,
    every_ms: u32,
    request_timeout_ms: u32,
}

/// The answer a poll waited for.
#[derive(Debug, Clone)]
pub struct Answer<T> {
    pub value: T,
    /// Which request it was, from 1.
    pub attempt: u32,
}

/// A poll that ran out of time.
#[derive(Debug, Clone)]
pub struct GaveUp {
    /// Why the last answer was not the one: what `accept` said, or the
    /// probe's error.
    pub last: String,
    pub attempts: u32,
}

impl<'a> Url<'a> {
    /// How long to keep asking, in all.
    pub fn timeout_ms(mut self, ms: u32) -> Self {
        self.timeout_ms = ms;
        self
    }

    /// The pause between requests.
    pub fn every_ms(mut self, ms: u32) -> Self {
        self.every_ms = ms;
        self
    }

    /// The timeout of each request.
    pub fn request_timeout_ms(mut self, ms: u32) -> Self {
        self.request_timeout_ms = ms;
        self
    }

    /// Ask until `accept` takes a response: `Ok(value)` ends the wait,
    /// `Err(why)` says why this answer is not the one and asks again. A
    /// failed request (refused, timed out, not granted) also asks again.
    pub fn until<T>(
        &self,
        mut accept: impl FnMut(&HttpResponse) -> Result<T, String>,
    ) -> Result<Answer<T>, GaveUp> {
        let mut last = String::new();
        let mut attempts = 0;
        let done = until(self.timeout_ms, self.every_ms, |attempt| {
            attempts = attempt;
            let answer = probe::http_get(self.url, self.request_timeout_ms)
                .and_then(|response| accept(&response));
            Ok(match answer {
                Ok(value) => Some(Answer { value, attempt }),
                Err(why) => {
                    last = why;
                    None
                }
            })
        });
        match done {
            Ok(Some(answer)) => Ok(answer),
            _ => Err(GaveUp { last, attempts }),
        }
    }

    /// Ask until it answers `status`, with `contains` in its body if set.
    /// [`GaveUp::last`] is then the last status and the first line of its
    /// body, e.g. `502 <html>`, or the probe's error.
    pub fn answers(
        &self,
        status: u16,
        contains: Option<&str>,
    ) -> Result<Answer<HttpResponse>, GaveUp> {
        self.until(|response| {
            let body = String::from_utf8_lossy(&response.body);
            if response.status == status && contains.is_none_or(|c| body.contains(c)) {
                Ok(response.clone())
            } else {
                Err(format!(
                    "{} {}",
                    response.status,
                    first_line(&response.body)
                ))
            }
        })
    }
}

/// The first line of a body, lossily decoded: enough of it for a log line.
pub fn first_line(body: &[u8]) -> String {
    String::from_utf8_lossy(body)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_stops_at_the_first_some() {
        let mut calls = Vec::new();
        let got = until(5_000, 1, |n| {
            calls.push(n);
            Ok((n == 3).then_some("three"))
        });
        assert_eq!(got, Ok(Some("three")));
        assert_eq!(calls, [1, 2, 3]);
    }

    #[test]
    fn until_tries_once_even_without_time_and_stops_at_the_deadline() {
        let mut calls = 0;
        assert_eq!(
            until(0, 10, |_| {
                calls += 1;
                Ok(None::<()>)
            }),
            Ok(None)
        );
        assert_eq!(calls, 1);
        let start = Instant::now();
        let mut calls = 0;
        assert_eq!(
            until(120, 50, |_| {
                calls += 1;
                Ok(None::<()>)
            }),
            Ok(None)
        );
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(120) && took < Duration::from_secs(2),
            "{took:?}"
        );
        assert!((3..=5).contains(&calls), "{calls}");
    }

    #[test]
    fn an_error_ends_the_wait_at_once() {
        let mut calls = 0;
        let got = until(5_000, 1, |_| {
            calls += 1;
            Err::<Option<()>, _>("gone".to_owned())
        });
        assert_eq!(got, Err("gone".to_owned()));
        assert_eq!(calls, 1);
    }

    #[test]
    fn first_lines() {
        assert_eq!(
            first_line(b"honeychat-api v2 abc\nmore"),
            "honeychat-api v2 abc"
        );
        assert_eq!(first_line(b""), "");
    }
}

//! What a server's answer to a write means for the lines in it.
//!
//! | answer | meaning | vmtel |
//! |---|---|---|
//! | 2xx | stored | delete from the spool |
//! | 400, 422 with one of InfluxDB's refusal bodies (below) | some or all lines refused (bad line, field type conflict); servers keep the good lines of a partial write | log the refused lines once, delete, do not resend; count the refused lines as rejected and only the others as delivered |
//! | 400, 422 with any other body | not InfluxDB speaking (a proxy, load balancer or WAF) | keep, report, retry with backoff |
//! | 413 | request too large | split the request in halves and send each |
//! | 401, 403 | token missing, wrong or without write permission | keep, report, retry with backoff |
//! | 404 | database or bucket missing (or wrong URL) | keep, report naming it, retry with backoff (optionally create it) |
//! | 429, 5xx, no answer | overloaded or down | keep, retry with capped exponential backoff and jitter, honouring `Retry-After` |
//! | anything else | unexpected | keep, report, retry with backoff |

use std::time::Duration;

use serde_json::Value;

/// One refused line, as far as the server says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedLine {
    /// 1-based line number within the request body, when known.
    pub line_number: Option<usize>,
    /// The line (or the server's copy of its start), when known.
    pub line: Option<String>,
    /// The server's reason.
    pub reason: String,
}

/// The meaning of one answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Stored.
    Delivered,
    /// 400/422 in one of InfluxDB's refusal formats: the server refused `refused` lines of
    /// the request and stored the others.
    Rejected {
        /// HTTP status.
        status: u16,
        /// The server's summary.
        message: String,
        /// Each refused line the server named.
        lines: Vec<RejectedLine>,
        /// How many lines of the request the server did not store (at least 1).
        refused: u64,
    },
    /// 400/422 whose body is none of InfluxDB's refusal formats (an HTML page from a proxy,
    /// load balancer or WAF): nothing says which lines were stored, so all are kept and
    /// retried.
    NotARefusal {
        /// HTTP status.
        status: u16,
        /// The body, shortened.
        message: String,
    },
    /// 413: the request is over the server's size limit.
    TooLarge,
    /// 401/403: authentication or permission.
    Auth {
        /// HTTP status.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// 404: the database or bucket does not exist (or the URL is wrong).
    NotFound {
        /// The server's message.
        message: String,
    },
    /// 429, 5xx or no answer: try again later.
    Retry {
        /// HTTP status, if there was an answer.
        status: Option<u16>,
        /// What went wrong.
        message: String,
        /// The server's `Retry-After`, if any.
        retry_after: Option<Duration>,
    },
    /// Any other status: kept and retried, reported as unexpected.
    Unexpected {
        /// HTTP status.
        status: u16,
        /// The server's message.
        message: String,
    },
}

/// Longest `Retry-After` honoured; a longer one is capped (a misconfigured proxy must not
/// stall delivery for days).
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(600);

/// Parses a `Retry-After` header: delay-seconds or an HTTP date (relative to `now`).
pub fn parse_retry_after(v: &str, now: std::time::SystemTime) -> Option<Duration> {
    let v = v.trim();
    let d = if let Ok(secs) = v.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = httpdate::parse_http_date(v).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(d.min(RETRY_AFTER_CAP))
}

/// Classifies an HTTP answer. `body` is the request's line protocol, to find the line
/// numbers of lines a server names only by their text.
pub fn classify(status: u16, retry_after: Option<&str>, answer: &str, body: &str) -> Outcome {
    let message = server_message(answer);
    match status {
        200..=299 => Outcome::Delivered,
        400 | 422 => match refused_count(answer, body.lines().count() as u64) {
            Some(refused) => Outcome::Rejected {
                status,
                lines: rejected_lines(answer, body),
                message,
                refused,
            },
            None => Outcome::NotARefusal { status, message },
        },
        413 => Outcome::TooLarge,
        401 | 403 => Outcome::Auth { status, message },
        404 => Outcome::NotFound { message },
        429 | 500..=599 => Outcome::Retry {
            status: Some(status),
            message,
            retry_after: retry_after
                .and_then(|v| parse_retry_after(v, std::time::SystemTime::now())),
        },
        _ => Outcome::Unexpected { status, message },
    }
}

/// The server's message from any of the JSON shapes (v3 `error`, v1 `error`, v2 `message`),
/// else the text itself (shortened).
pub fn server_message(answer: &str) -> String {
    let text = match serde_json::from_str::<Value>(answer) {
        Ok(v) => ["error", "message"]
            .iter()
            .find_map(|k| v.get(k).and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| answer.trim().to_owned()),
        Err(_) => answer.trim().to_owned(),
    };
    shorten(&text, 500)
}

/// `s` cut to at most `max` characters (with `...`).
pub fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max).collect();
    out.push_str("...");
    out
}

/// How many of a request's `lines` a 400/422 `answer` says were not stored, if the answer is
/// one of InfluxDB's refusal formats; `None` for anything else (whose lines must be kept).
///
/// * InfluxDB 3: a JSON object with `error` and `data`. `data` as an array lists the refused
///   lines of a partial write (the others are stored); `data` as one object is a whole request
///   refused (`accept_partial=false`, the v1 endpoint).
/// * InfluxDB 1.x: `{"error": "..."}` with `unable to parse` or `partial write`. A partial
///   write stored every line but the `unable to parse` ones and the `dropped=N` ones; a bare
///   `unable to parse` stored none.
/// * InfluxDB 2: `{"code": "invalid" | "unprocessable entity", "message": "..."}`; a
///   `partial write` message counts as in 1.x, any other refuses the whole request.
pub fn refused_count(answer: &str, lines: u64) -> Option<u64> {
    let v = serde_json::from_str::<Value>(answer).ok()?;
    let obj = v.as_object()?;
    let all = lines.max(1);
    let text_of = |k: &str| obj.get(k).and_then(Value::as_str);
    if let (Some(_), Some(data)) = (text_of("error"), obj.get("data")) {
        return match data {
            Value::Array(items) => {
                let mut numbers: Vec<u64> = items
                    .iter()
                    .filter_map(|d| d.get("line_number").and_then(Value::as_u64))
                    .collect();
                numbers.sort_unstable();
                numbers.dedup();
                let named = numbers.len().max(items.len()) as u64;
                Some(named.clamp(1, all))
            }
            Value::Object(_) => Some(all),
            _ => None,
        };
    }
    let v1_or_v2 = |text: &str| -> Option<u64> {
        if text.starts_with("partial write") || text.contains(": partial write") {
            let parts = text.matches("unable to parse '").count() as u64;
            // InfluxDB ends the message with " dropped=N" (a refused line quoted before it
            // may itself contain "dropped=", e.g. vmtel_internal's sink_dropped).
            let dropped = text
                .trim_end()
                .rsplit_once(" dropped=")
                .and_then(|(_, n)| n.parse::<u64>().ok())
                .unwrap_or(0);
            Some(parts.saturating_add(dropped).clamp(1, all))
        } else {
            None
        }
    };
    if let Some(code) = text_of("code") {
        if !matches!(code, "invalid" | "unprocessable entity") {
            return None;
        }
        let message = text_of("message").unwrap_or("");
        return Some(v1_or_v2(message).unwrap_or(all));
    }
    let error = text_of("error")?;
    if let Some(n) = v1_or_v2(error) {
        return Some(n);
    }
    error.contains("unable to parse").then_some(all)
}

/// The refused lines a 400/422 answer names.
///
/// * InfluxDB 3: `{"error": "partial write of line protocol occurred", "data": [{"original_line",
///   "line_number", "error_message"}, ...]}` (or one such object with `accept_partial=false`).
/// * InfluxDB 1.x: `{"error": "partial write: unable to parse 'LINE': REASON ... dropped=N"}`,
///   several `unable to parse` parts separated by newlines; a field type conflict names no line.
/// * InfluxDB 2: `{"code": "invalid", "message": "..."}`, sometimes with `line N:`.
pub fn rejected_lines(answer: &str, body: &str) -> Vec<RejectedLine> {
    let Ok(v) = serde_json::from_str::<Value>(answer) else {
        return Vec::new();
    };
    let items: Vec<&Value> = match v.get("data") {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(o @ Value::Object(_)) => vec![o],
        _ => Vec::new(),
    };
    if !items.is_empty() {
        return items
            .into_iter()
            .map(|d| RejectedLine {
                line_number: d
                    .get("line_number")
                    .and_then(Value::as_u64)
                    .and_then(|n| usize::try_from(n).ok()),
                line: d
                    .get("original_line")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                reason: d
                    .get("error_message")
                    .and_then(Value::as_str)
                    .unwrap_or("refused")
                    .to_owned(),
            })
            .collect();
    }
    let text = ["error", "message"]
        .iter()
        .find_map(|k| v.get(k).and_then(Value::as_str))
        .unwrap_or("");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("unable to parse '") {
        let after = &rest[start + "unable to parse '".len()..];
        // The line ends at the last "': " before the next part (lines may contain quotes).
        let part_end = after.find("\nunable to parse '").unwrap_or(after.len());
        let part = &after[..part_end];
        let Some(q) = part.rfind("': ") else { break };
        let line = &part[..q];
        let reason = part[q + 3..]
            .split(" dropped=")
            .next()
            .unwrap_or("")
            .trim()
            .to_owned();
        let line_number = body.lines().position(|l| l == line).map(|i| i + 1);
        out.push(RejectedLine {
            line_number,
            line: Some(line.to_owned()),
            reason,
        });
        rest = &after[part_end..];
    }
    if out.is_empty() && !text.is_empty() {
        // v2 names a line as "line N: ..." in its message.
        let line_number = text
            .split("line ")
            .nth(1)
            .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse::<usize>().ok());
        out.push(RejectedLine {
            line_number,
            line: line_number.and_then(|n| body.lines().nth(n.wrapping_sub(1)).map(str::to_owned)),
            reason: text.to_owned(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_the_documented_outcomes() {
        assert_eq!(classify(204, None, "", ""), Outcome::Delivered);
        assert_eq!(classify(200, None, "", ""), Outcome::Delivered);
        assert_eq!(classify(413, None, "too big", ""), Outcome::TooLarge);
        assert!(matches!(
            classify(401, None, "{\"error\":\"x\"}", ""),
            Outcome::Auth { status: 401, .. }
        ));
        assert!(matches!(
            classify(403, None, "", ""),
            Outcome::Auth { status: 403, .. }
        ));
        assert!(
            matches!(classify(404, None, "{\"error\":\"database not found: \\\"d\\\"\"}", ""),
            Outcome::NotFound { message } if message == "database not found: \"d\"")
        );
        assert!(matches!(
            classify(
                422,
                None,
                r#"{"code":"unprocessable entity","message":"partial write: x dropped=1"}"#,
                "a\n"
            ),
            Outcome::Rejected {
                status: 422,
                refused: 1,
                ..
            }
        ));
        assert!(matches!(
            classify(422, None, "", ""),
            Outcome::NotARefusal { status: 422, .. }
        ));
        assert!(matches!(
            classify(302, None, "", ""),
            Outcome::Unexpected { status: 302, .. }
        ));
        match classify(503, Some("7"), "busy", "") {
            Outcome::Retry {
                status,
                retry_after,
                message,
            } => {
                assert_eq!(status, Some(503));
                assert_eq!(retry_after, Some(Duration::from_secs(7)));
                assert_eq!(message, "busy");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify(429, None, "", ""),
            Outcome::Retry {
                retry_after: None,
                ..
            }
        ));
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date_and_is_capped() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").expect("date");
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("999999", now), Some(RETRY_AFTER_CAP));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn v3_partial_write_names_each_line() {
        let answer = r#"{"error":"partial write of line protocol occurred","data":[{"error_message":"No fields were provided","line_number":2,"original_line":"m,t=a"},{"error_message":"bad","line_number":5,"original_line":"x"}]}"#;
        match classify(400, None, answer, "a\nb\n") {
            Outcome::Rejected { message, lines, .. } => {
                assert_eq!(message, "partial write of line protocol occurred");
                assert_eq!(lines.len(), 2);
                assert_eq!(lines[0].line_number, Some(2));
                assert_eq!(lines[0].line.as_deref(), Some("m,t=a"));
                assert_eq!(lines[0].reason, "No fields were provided");
                assert_eq!(lines[1].line_number, Some(5));
            }
            other => panic!("{other:?}"),
        }
        // accept_partial=false: one object.
        let one = r#"{"error":"line protocol parsing error","data":{"error_message":"e","line_number":1,"original_line":"x"}}"#;
        assert_eq!(rejected_lines(one, "x\n")[0].line_number, Some(1));
    }

    #[test]
    fn v1_unable_to_parse_is_matched_to_line_numbers() {
        let body = "ok f=1i 1\nbad line 'q' 2\nok f=2i 3\nm,t=x 4\n";
        let answer = "{\"error\":\"partial write: unable to parse 'bad line 'q' 2': invalid field format\\nunable to parse 'm,t=x 4': missing fields dropped=0\"}";
        let lines = rejected_lines(answer, body);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0].line_number, Some(2));
        assert_eq!(lines[0].reason, "invalid field format");
        assert_eq!(lines[1].line_number, Some(4));
        assert_eq!(lines[1].reason, "missing fields");
    }

    #[test]
    fn v1_type_conflict_and_v2_messages_are_kept() {
        let conflict = r#"{"error":"partial write: field type conflict: input field \"f\" on measurement \"m\" is type float, already exists as type integer dropped=1"}"#;
        let lines = rejected_lines(conflict, "m f=1.5 1\n");
        assert_eq!(lines.len(), 1);
        assert!(lines[0].reason.contains("field type conflict"), "{lines:?}");
        let v2 = r#"{"code":"invalid","message":"unable to parse points: line 2: no field"}"#;
        let lines = rejected_lines(v2, "a f=1i 1\nb 2\n");
        assert_eq!(lines[0].line_number, Some(2));
        assert_eq!(lines[0].line.as_deref(), Some("b 2"));
        assert_eq!(
            server_message(v2),
            "unable to parse points: line 2: no field"
        );
    }

    #[test]
    fn only_influxdb_refusal_bodies_settle_lines() {
        let body = "a f=1i 1\nb f=1i 2\nc f=1i 3\nd f=1i 4\n";
        let refused = |status, answer: &str| match classify(status, None, answer, body) {
            Outcome::Rejected { refused, .. } => Some(refused),
            Outcome::NotARefusal { .. } => None,
            other => panic!("{other:?}"),
        };
        // A proxy's, load balancer's or WAF's page: nothing is known to be stored.
        assert_eq!(
            refused(400, "<html><body>400 Bad Request</body></html>"),
            None
        );
        assert_eq!(refused(400, ""), None);
        assert_eq!(refused(400, r#"{"message":"bad request"}"#), None);
        assert_eq!(refused(400, r#"{"error":"database is required"}"#), None);
        assert_eq!(
            refused(400, r#"{"code":"too many requests","message":"x"}"#),
            None
        );
        assert_eq!(refused(400, "[1,2]"), None);
        // InfluxDB 3: a partial write names its refused lines; one object refuses them all.
        let v3 = r#"{"error":"partial write of line protocol occurred","data":[{"error_message":"e","line_number":2,"original_line":"b"},{"error_message":"e","line_number":4,"original_line":"d"}]}"#;
        assert_eq!(refused(400, v3), Some(2));
        let whole = r#"{"error":"line protocol parsing error","data":{"error_message":"e","line_number":1,"original_line":"a"}}"#;
        assert_eq!(refused(400, whole), Some(4));
        // InfluxDB 1.x: parse errors of a partial write plus the dropped count; a bare
        // "unable to parse" stored nothing.
        let v1 = r#"{"error":"partial write: unable to parse 'x': bad\nunable to parse 'y': bad dropped=0"}"#;
        assert_eq!(refused(400, v1), Some(2));
        let conflict = r#"{"error":"partial write: field type conflict: input field \"f\" on measurement \"m\" is type float, already exists as type integer dropped=3"}"#;
        assert_eq!(refused(400, conflict), Some(3));
        let quoted = r#"{"error":"partial write: unable to parse 'vmtel_internal sink_dropped=7i 1': bad dropped=0"}"#;
        assert_eq!(
            refused(400, quoted),
            Some(1),
            "a quoted dropped= is not the count"
        );
        assert_eq!(
            refused(400, r#"{"error":"unable to parse 'x': bad"}"#),
            Some(4)
        );
        // InfluxDB 2: a whole-request refusal counts every line.
        assert_eq!(
            refused(
                400,
                r#"{"code":"invalid","message":"unable to parse points: line 2: no field"}"#
            ),
            Some(4)
        );
        assert_eq!(
            refused(
                422,
                r#"{"code":"unprocessable entity","message":"failure writing points to database: partial write: field type conflict dropped=1"}"#
            ),
            Some(1)
        );
        // Never more than the request held, never zero.
        assert_eq!(
            refused(400, r#"{"error":"partial write: x dropped=99"}"#),
            Some(4)
        );
        assert_eq!(
            refused(400, r#"{"error":"partial write: x dropped=0"}"#),
            Some(1)
        );
    }

    #[test]
    fn non_json_answers_are_shortened_not_trusted() {
        assert_eq!(server_message("  plain text \n"), "plain text");
        assert_eq!(server_message(&"x".repeat(600)).len(), 503);
        assert!(rejected_lines("<html>", "a\n").is_empty());
    }
}

//! The troubleshooting guide (`docs/troubleshooting.md`), built into the binary so that a
//! dashboard user without the source tree can read it.
//!
//! * [`page`] serves it as HTML at [`PATH`], with an anchor per heading spelled as GitHub
//!   spells it ([`slug`]), so that `#anchor` links work on the served page and on GitHub alike.
//! * [`Guide::anchor_for`] finds the entry for an error text the dashboard shows: the agent
//!   page links each error to it (`help` in `/api/agent`).
//!
//! The guide's conventions, which the page states at its top and `tests/docs_troubleshooting.rs`
//! checks against the source: every heading is an entry; a fenced code block of language
//! `vmtel` lists vmtel's own messages under it, one per line, with runtime parts written as
//! `<placeholder>`; blocks of the languages in [`QUOTED`] quote the text of another program
//! (libvirt, InfluxDB, ssh, ...) as it appears inside vmtel's messages.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use pulldown_cmark::{CodeBlockKind, CowStr, Event, HeadingLevel, Options, Parser, Tag, TagEnd};

use super::pages::PAGE_HEADERS;

/// Where the dashboard serves the guide.
pub const PATH: &str = "/help/troubleshooting";

/// The guide's Markdown, as built in.
pub const MARKDOWN: &str = include_str!("../../docs/troubleshooting.md");

/// The language of the code blocks that list vmtel's own messages.
pub const VMTEL: &str = "vmtel";

/// The languages of code blocks that quote another program's text (which vmtel passes on
/// inside its own messages).
pub const QUOTED: &[&str] = &["libvirt", "influxdb", "ssh", "tls", "sqlite", "system"];

/// Fewest letters and digits of a message's beginning that an error must match to be linked
/// to its entry (a shorter message must match whole).
const MIN_PREFIX: usize = 16;

/// Whose text a listed message is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Whose {
    /// vmtel's own message.
    Vmtel,
    /// Another program's text, quoted; the block's language names it.
    Quoted(String),
}

/// One listed message: a line of a message block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The text, with `<placeholder>`s for its runtime parts.
    pub text: String,
    /// Its 1-based line in the Markdown file.
    pub line: usize,
    /// Whose text it is.
    pub whose: Whose,
}

/// One heading of the guide and the messages listed under it (before the next heading).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The heading's text.
    pub title: String,
    /// Its anchor ([`slug`], made unique as GitHub does).
    pub anchor: String,
    /// Heading level, 1 to 6.
    pub level: u8,
    /// The index of the enclosing entry (the nearest preceding heading of a lower level).
    pub parent: Option<usize>,
    /// The messages listed under it.
    pub messages: Vec<Message>,
}

/// The guide, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guide {
    /// Every heading, in order.
    pub entries: Vec<Entry>,
}

/// A piece of a listed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment<'a> {
    /// Text printed as it is.
    Fixed(&'a str),
    /// A `<placeholder>` for a runtime part (its name without the angle brackets).
    Placeholder(&'a str),
}

/// Splits a listed message at its placeholders: `<` then a lowercase letter, then lowercase
/// letters, digits, spaces, `_`, `-`, `.` or `/`, then `>`. Any other `<` is fixed text.
pub fn segments(text: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    let mut fixed_from = 0;
    let mut i = 0;
    let bytes = text.as_bytes();
    while i < bytes.len() {
        if bytes[i] == b'<' {
            if let Some(len) = placeholder_len(&text[i..]) {
                if fixed_from < i {
                    out.push(Segment::Fixed(&text[fixed_from..i]));
                }
                out.push(Segment::Placeholder(&text[i + 1..i + len - 1]));
                i += len;
                fixed_from = i;
                continue;
            }
        }
        i += 1;
    }
    if fixed_from < text.len() {
        out.push(Segment::Fixed(&text[fixed_from..]));
    }
    out
}

/// The length of the placeholder at the start of `s` (with its brackets), if one is there.
fn placeholder_len(s: &str) -> Option<usize> {
    let rest = s.strip_prefix('<')?;
    let end = rest.find('>')?;
    let name = &rest[..end];
    let mut chars = name.chars();
    let first = chars.next()?;
    let ok = first.is_ascii_lowercase()
        && chars.all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, ' ' | '_' | '-' | '.' | '/')
        });
    ok.then_some(end + 2)
}

/// Letters and digits in `s` (what matching counts; punctuation and spaces do not).
fn weight(s: &str) -> usize {
    s.chars().filter(|c| c.is_alphanumeric()).count()
}

/// GitHub's anchor for a heading: lower case, spaces to `-`, anything but letters, digits, `-`
/// and `_` removed.
pub fn slug(title: &str) -> String {
    title
        .trim()
        .chars()
        .filter_map(|c| {
            if c.is_alphanumeric() || c == '_' || c == '-' {
                Some(c.to_lowercase().collect::<String>())
            } else if c == ' ' {
                Some("-".into())
            } else {
                None
            }
        })
        .collect()
}

/// Unique anchors, as GitHub makes them: a repeated slug gets `-1`, `-2`, ...
#[derive(Default)]
struct Anchors {
    seen: std::collections::HashMap<String, usize>,
}

impl Anchors {
    fn next(&mut self, title: &str) -> String {
        let base = slug(title);
        let n = self.seen.entry(base.clone()).or_insert(0);
        let anchor = if *n == 0 { base } else { format!("{base}-{n}") };
        *n += 1;
        anchor
    }
}

fn level_number(level: HeadingLevel) -> u8 {
    match level {
        HeadingLevel::H1 => 1,
        HeadingLevel::H2 => 2,
        HeadingLevel::H3 => 3,
        HeadingLevel::H4 => 4,
        HeadingLevel::H5 => 5,
        HeadingLevel::H6 => 6,
    }
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(0, |s| s.bytes().filter(|b| *b == b'\n').count())
        + 1
}

impl Guide {
    /// Parses the guide's Markdown.
    pub fn parse(markdown: &str) -> Guide {
        let mut entries: Vec<Entry> = Vec::new();
        let mut anchors = Anchors::default();
        let mut heading: Option<(u8, String)> = None;
        let mut block: Option<Whose> = None;
        for (event, range) in Parser::new_ext(markdown, Options::ENABLE_TABLES).into_offset_iter() {
            match event {
                Event::Start(Tag::Heading { level, .. }) => {
                    heading = Some((level_number(level), String::new()));
                }
                Event::End(TagEnd::Heading(_)) => {
                    if let Some((level, title)) = heading.take() {
                        let parent = entries.iter().rposition(|e| e.level < level);
                        entries.push(Entry {
                            anchor: anchors.next(&title),
                            title,
                            level,
                            parent,
                            messages: Vec::new(),
                        });
                    }
                }
                Event::Text(t) | Event::Code(t) if heading.is_some() => {
                    if let Some((_, title)) = heading.as_mut() {
                        title.push_str(&t);
                    }
                }
                Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(info))) => {
                    let lang = info.split_whitespace().next().unwrap_or("");
                    block = if lang == VMTEL {
                        Some(Whose::Vmtel)
                    } else if QUOTED.contains(&lang) {
                        Some(Whose::Quoted(lang.to_owned()))
                    } else {
                        None
                    };
                }
                Event::End(TagEnd::CodeBlock) => block = None,
                Event::Text(t) => {
                    if let (Some(whose), Some(entry)) = (&block, entries.last_mut()) {
                        let first = line_of(markdown, range.start);
                        for (i, line) in t.lines().enumerate() {
                            if !line.trim().is_empty() {
                                entry.messages.push(Message {
                                    text: line.trim_end().to_owned(),
                                    line: first + i,
                                    whose: whose.clone(),
                                });
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        Guide { entries }
    }

    /// The guide built into this binary.
    pub fn builtin() -> &'static Guide {
        static GUIDE: OnceLock<Guide> = OnceLock::new();
        GUIDE.get_or_init(|| Guide::parse(MARKDOWN))
    }

    /// Every message of vmtel's the guide lists.
    pub fn vmtel_messages(&self) -> impl Iterator<Item = &Message> {
        self.entries
            .iter()
            .flat_map(|e| e.messages.iter())
            .filter(|m| m.whose == Whose::Vmtel)
    }

    /// The anchor of the entry that explains `error`, if any: the entry one of whose vmtel
    /// messages `error` begins with (at least [`MIN_PREFIX`] letters and digits of it, or all
    /// of a shorter one), preferring the sub-entry (a deeper heading) that also quotes the
    /// other program's text `error` contains; among equals, the first.
    pub fn anchor_for(&self, error: &str) -> Option<&str> {
        let own: Vec<usize> = self
            .entries
            .iter()
            .map(|e| {
                e.messages
                    .iter()
                    .filter(|m| m.whose == Whose::Vmtel)
                    .map(|m| prefix_score(&m.text, error))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut best: Option<(usize, usize)> = None;
        for (i, e) in self.entries.iter().enumerate() {
            // vmtel's part: this entry's messages, else those of the nearest enclosing entry
            // that lists some.
            let mut at = Some(i);
            let mut vmtel = 0;
            while let Some(j) = at {
                let lists = self.entries[j]
                    .messages
                    .iter()
                    .any(|m| m.whose == Whose::Vmtel);
                if lists {
                    vmtel = own[j];
                    break;
                }
                at = self.entries[j].parent;
            }
            let quoted = e
                .messages
                .iter()
                .filter(|m| m.whose != Whose::Vmtel)
                .map(|m| quoted_score(&m.text, error))
                .max()
                .unwrap_or(0);
            let score = vmtel + quoted;
            if score > 0 && best.is_none_or(|(s, _)| score > s) {
                best = Some((score, i));
            }
        }
        best.map(|(_, i)| self.entries[i].anchor.as_str())
    }
}

/// How much of `message` `error` matches from its start: the letters and digits of the
/// message's leading fixed parts found in `error` in order (the first at the start of `error`
/// unless the message begins with a placeholder), and of the beginning of the next part when
/// `error` ends with it; 0 unless that is at least [`MIN_PREFIX`] or the whole message.
fn prefix_score(message: &str, error: &str) -> usize {
    let segs = segments(message);
    let total: usize = segs
        .iter()
        .map(|s| match s {
            Segment::Fixed(f) => weight(f),
            Segment::Placeholder(_) => 0,
        })
        .sum();
    let mut pos = 0;
    let mut matched = 0;
    let mut anchored = true;
    for s in segs {
        match s {
            Segment::Placeholder(_) => anchored = false,
            Segment::Fixed(f) => {
                let found = if anchored {
                    error.starts_with(f).then_some(0)
                } else {
                    error.get(pos..).and_then(|r| r.find(f)).map(|i| pos + i)
                };
                anchored = false;
                match found {
                    Some(i) => {
                        matched += weight(f);
                        pos = i + f.len();
                    }
                    None => {
                        // `error` may end inside this part (the dashboard shows a message
                        // without what the log adds to it).
                        let tail = error.get(pos..).unwrap_or("");
                        let cut = (1..f.len())
                            .rev()
                            .filter(|&k| f.is_char_boundary(k))
                            .find(|&k| tail.ends_with(&f[..k]));
                        matched += cut.map_or(0, |k| weight(&f[..k]));
                        break;
                    }
                }
            }
        }
    }
    if matched > 0 && matched >= total.min(MIN_PREFIX) {
        matched
    } else {
        0
    }
}

/// The letters and digits of a quoted text when all its fixed parts are found in `error` in
/// order, else 0.
fn quoted_score(text: &str, error: &str) -> usize {
    let mut pos = 0;
    let mut matched = 0;
    for s in segments(text) {
        if let Segment::Fixed(f) = s {
            match error.get(pos..).and_then(|r| r.find(f)) {
                Some(i) => {
                    pos += i + f.len();
                    matched += weight(f);
                }
                None => return 0,
            }
        }
    }
    matched
}

/// The dashboard's link for `error` (the built-in guide's page and anchor), if the guide has
/// an entry for it.
pub fn link_for(error: &str) -> Option<String> {
    Guide::builtin()
        .anchor_for(error)
        .map(|a| format!("{PATH}#{a}"))
}

/// Renders the guide's Markdown as the body of the page: headings get their anchors; raw
/// HTML in the Markdown is shown as text, never interpreted; links to other files of the
/// source tree (which the dashboard does not serve) become plain text.
pub fn html(markdown: &str) -> String {
    let mut anchors = Anchors::default();
    let mut events: Vec<Event<'_>> = Vec::new();
    let mut heading: Option<(HeadingLevel, Vec<Event<'_>>)> = None;
    let mut links: Vec<bool> = Vec::new();
    for event in Parser::new_ext(markdown, Options::ENABLE_TABLES) {
        let event = match event {
            Event::Start(Tag::Heading { level, .. }) => {
                heading = Some((level, Vec::new()));
                continue;
            }
            Event::End(TagEnd::Heading(_)) => {
                if let Some((level, inner)) = heading.take() {
                    let title: String = inner
                        .iter()
                        .filter_map(|e| match e {
                            Event::Text(t) | Event::Code(t) => Some(t.as_ref()),
                            _ => None,
                        })
                        .collect();
                    events.push(Event::Start(Tag::Heading {
                        level,
                        id: Some(CowStr::from(anchors.next(&title))),
                        classes: Vec::new(),
                        attrs: Vec::new(),
                    }));
                    events.extend(inner);
                    events.push(Event::End(TagEnd::Heading(level)));
                }
                continue;
            }
            Event::Html(t) | Event::InlineHtml(t) => Event::Text(t),
            Event::Start(Tag::Link { ref dest_url, .. }) => {
                let keep = dest_url.starts_with('#') || dest_url.starts_with("https://");
                links.push(keep);
                if !keep {
                    continue;
                }
                event
            }
            Event::End(TagEnd::Link) => {
                if links.pop() != Some(true) {
                    continue;
                }
                event
            }
            Event::Start(Tag::Image { .. }) | Event::End(TagEnd::Image) => continue,
            other => other,
        };
        match heading.as_mut() {
            Some((_, inner)) => inner.push(event),
            None => events.push(event),
        }
    }
    let mut out = String::with_capacity(markdown.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut out, events.into_iter());
    out
}

/// The whole page: the dashboard's header and the guide.
fn page_html() -> &'static str {
    static PAGE: OnceLock<String> = OnceLock::new();
    PAGE.get_or_init(|| {
        format!(
            "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>vmtel: troubleshooting</title>\n\
             <link rel=\"stylesheet\" href=\"/assets/app.css\">\n</head>\n<body>\n<header>\n  \
             <a class=\"brand\" href=\"/\">vmtel</a>\n  <nav aria-label=\"Pages\"><a href=\"/\">Hosts</a>\
             <a href=\"/fleet\">Fleet</a><a href=\"/problems\">Problems</a><a href=\"/top\">Top</a>\
             <a href=\"/agent\">Agent</a></nav>\n</header>\n<main id=\"main\" class=\"guide\">\n{}</main>\n</body>\n</html>\n",
            html(MARKDOWN)
        )
    })
}

/// `GET /help/troubleshooting`: the guide, with the pages' security headers.
pub async fn page() -> Response {
    (
        PAGE_HEADERS,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        Html(page_html()),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUIDE: &str = "# Guide\n\n## Collection\n\n### Cannot connect\n\n```vmtel\ncannot connect to <uri>: <libvirt message>. Check the URI; retrying in <seconds>s\n```\n\n#### Permission denied\n\n```libvirt\nFailed to connect socket to '<path>': Permission denied\n```\n\n#### No such file\n\n```libvirt\nFailed to connect socket to '<path>': No such file or directory\n```\n\n### Store full\n\n```vmtel\nhistory store <path> is full (<cause>)\n```\n\n## Collection\n\nSee <b>this</b> and [the config](configuration.md) or [above](#cannot-connect).\n";

    #[test]
    fn placeholders_are_lowercase_names_in_angle_brackets() {
        assert_eq!(
            segments("at <uri>: <libvirt message> (<a<b>"),
            vec![
                Segment::Fixed("at "),
                Segment::Placeholder("uri"),
                Segment::Fixed(": "),
                Segment::Placeholder("libvirt message"),
                Segment::Fixed(" (<a"),
                Segment::Placeholder("b"),
            ]
        );
        assert_eq!(segments("a <B> <>"), vec![Segment::Fixed("a <B> <>")]);
    }

    #[test]
    fn slugs_follow_github() {
        assert_eq!(
            slug("InfluxDB answers 401 or 403: `token` refused!"),
            "influxdb-answers-401-or-403-token-refused"
        );
        let g = Guide::parse(GUIDE);
        let anchors: Vec<&str> = g.entries.iter().map(|e| e.anchor.as_str()).collect();
        assert_eq!(
            anchors,
            [
                "guide",
                "collection",
                "cannot-connect",
                "permission-denied",
                "no-such-file",
                "store-full",
                "collection-1"
            ]
        );
    }

    #[test]
    fn messages_belong_to_their_heading_with_lines() {
        let g = Guide::parse(GUIDE);
        let connect = &g.entries[2];
        assert_eq!(connect.messages.len(), 1);
        assert_eq!(connect.messages[0].whose, Whose::Vmtel);
        assert_eq!(
            GUIDE.lines().nth(connect.messages[0].line - 1),
            Some(connect.messages[0].text.as_str())
        );
        assert_eq!(g.entries[3].parent, Some(2));
        assert_eq!(
            g.entries[3].messages[0].whose,
            Whose::Quoted("libvirt".into())
        );
        assert_eq!(g.vmtel_messages().count(), 2);
    }

    #[test]
    fn errors_link_to_the_most_specific_entry() {
        let g = Guide::parse(GUIDE);
        let denied = "cannot connect to \"qemu:///system\": Failed to connect socket to '/var/run/libvirt/libvirt-sock': Permission denied. Check the URI";
        assert_eq!(g.anchor_for(denied), Some("permission-denied"));
        let missing = denied.replace("Permission denied", "No such file or directory");
        assert_eq!(g.anchor_for(&missing), Some("no-such-file"));
        let other = denied.replace("Permission denied", "Connection reset");
        assert_eq!(g.anchor_for(&other), Some("cannot-connect"));
        assert_eq!(
            g.anchor_for("history store /var/lib/vmtel/history.db is full (disk full)"),
            Some("store-full")
        );
        // Too little of a message, or text the guide does not list: no link.
        assert_eq!(g.anchor_for("cannot connect"), None);
        assert_eq!(g.anchor_for("something else entirely"), None);
        assert_eq!(g.anchor_for(""), None);
    }

    #[test]
    fn html_has_anchors_and_interprets_no_html() {
        let h = html(GUIDE);
        assert!(h.contains("<h4 id=\"permission-denied\">"), "{h}");
        assert!(h.contains("<h2 id=\"collection-1\">"), "{h}");
        assert!(h.contains("&lt;b&gt;this&lt;/b&gt;"), "{h}");
        assert!(!h.contains("<b>"), "{h}");
        assert!(!h.contains("configuration.md"), "{h}");
        assert!(h.contains("<a href=\"#cannot-connect\">above</a>"), "{h}");
        assert!(h.contains("&lt;libvirt message&gt;"), "{h}");
    }

    /// The fixed parts of a listed message (what an error must contain to match it).
    fn fixed(text: &str) -> Vec<&str> {
        segments(text)
            .into_iter()
            .filter_map(|s| match s {
                Segment::Fixed(f) => Some(f),
                Segment::Placeholder(_) => None,
            })
            .collect()
    }

    #[test]
    fn every_listed_message_links_to_an_entry_listing_it() {
        let g = Guide::builtin();
        assert!(g.vmtel_messages().count() > 0);
        for m in g.vmtel_messages() {
            let link = link_for(&m.text);
            let entry = g
                .entries
                .iter()
                .find(|e| link == Some(format!("{PATH}#{}", e.anchor)));
            // The entry lists this message, or one that reads the same but for placeholder
            // names (a general entry and a specific one).
            assert!(
                entry.is_some_and(|e| e
                    .messages
                    .iter()
                    .any(|x| x.whose == Whose::Vmtel && fixed(&x.text) == fixed(&m.text))),
                "line {}: {} links to {link:?}",
                m.line,
                m.text
            );
        }
    }

    /// The entry of the built-in guide that quotes `text` (another program's).
    fn quoting(text: &str) -> String {
        let e = Guide::builtin()
            .entries
            .iter()
            .find(|e| {
                e.messages
                    .iter()
                    .any(|m| m.whose != Whose::Vmtel && m.text.contains(text))
            })
            .unwrap_or_else(|| panic!("the guide quotes {text:?}"));
        format!("{PATH}#{}", e.anchor)
    }

    #[test]
    fn real_errors_link_to_the_entry_of_their_cause() {
        let connect = |message: &str| {
            crate::collect::CollectError::Connect {
                uri: "qemu:///system".into(),
                message: message.into(),
            }
            .to_string()
        };
        let denied = connect(
            "Failed to connect socket to '/var/run/libvirt/libvirt-sock': Permission denied",
        );
        assert_eq!(link_for(&denied), Some(quoting("Permission denied")));
        let host_key =
            connect("Cannot recv data: Host key verification failed.: Connection reset by peer");
        assert_eq!(
            link_for(&host_key),
            Some(quoting("Host key verification failed"))
        );
        // A cause the guide does not quote: the general entry of the message.
        let other = connect("some new libvirt failure");
        let general = link_for(&other);
        assert!(general.is_some());
        assert_ne!(general, link_for(&denied));
        assert!(Guide::builtin().entries.iter().any(|e| {
            general == Some(format!("{PATH}#{}", e.anchor))
                && e.messages
                    .iter()
                    .any(|m| m.text.starts_with("cannot connect to libvirt"))
        }));
        let tls = "cannot reach https://influx.example.org:8181: I/O error: invalid peer certificate: UnknownIssuer";
        assert_eq!(
            link_for(tls),
            Some(quoting("invalid peer certificate: UnknownIssuer"))
        );
    }
}

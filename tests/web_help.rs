//! The troubleshooting guide served by the dashboard (`/help/troubleshooting`) and the Agent
//! page's links to it, against a running `vmtel run` (libvirt's test driver; one source that
//! cannot connect).

#[path = "browser/harness.rs"]
mod harness;

use harness::Vmtel;
use vmtel::serve::help::{segments, Guide, Segment, Whose};

/// A source whose socket does not exist: libvirt refuses it at once.
const BROKEN: &str = "qemu:///system?socket=/nonexistent/vmtel-test-sock";

#[test]
fn the_guide_is_served_and_the_agent_page_links_errors_to_it() {
    let v = Vmtel::run(&format!("[[sources]]\nuri = \"{BROKEN}\"\n"), &[]);
    let agent = v.wait_json("/api/agent", 60, "the broken source's error", |a| {
        a["sources"].as_array().is_some_and(|s| {
            s.iter()
                .any(|s| s["source"] == BROKEN && s["last_error"].is_string())
        })
    });
    let error = agent["sources"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["source"] == BROKEN))
        .and_then(|s| s["last_error"].as_str())
        .expect("the broken source's error")
        .to_owned();
    let link = agent["help"][&error]
        .as_str()
        .unwrap_or_else(|| panic!("no help link for {error:?}: {agent}"));
    let anchor = link
        .strip_prefix("/help/troubleshooting#")
        .unwrap_or_else(|| panic!("a link into the guide: {link}"));

    // The entry it links to quotes libvirt's text of this error.
    let guide = Guide::builtin();
    let entry = guide
        .entries
        .iter()
        .find(|e| e.anchor == anchor)
        .unwrap_or_else(|| panic!("no entry #{anchor}"));
    let quoted = entry
        .messages
        .iter()
        .filter(|m| m.whose != Whose::Vmtel)
        .any(|m| {
            segments(&m.text).iter().all(|s| match s {
                Segment::Fixed(f) => error.contains(f),
                Segment::Placeholder(_) => true,
            })
        });
    assert!(
        quoted,
        "#{anchor} ({}) does not quote the cause of {error:?}",
        entry.title
    );

    // The page: HTML with the pages' security headers and that anchor.
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let r = agent
        .get(&format!("{}/help/troubleshooting", v.base))
        .call()
        .expect("the guide");
    assert_eq!(r.status(), 200);
    assert!(r
        .header("content-type")
        .unwrap_or("")
        .starts_with("text/html"));
    assert!(r
        .header("content-security-policy")
        .unwrap_or("")
        .contains("script-src 'self'"));
    let page = r.into_string().expect("body");
    assert!(
        page.contains(&format!("id=\"{anchor}\"")),
        "the page has the anchor {anchor}"
    );
    // Every listed message is on the page, escaped (placeholders are text, not tags).
    for m in guide.vmtel_messages() {
        let escaped = m
            .text
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        assert!(page.contains(&escaped), "not on the page: {}", m.text);
    }
}

#[test]
fn the_guide_needs_the_token_like_the_pages() {
    const TOKEN: &str = "t0ken-for-the-help-test";
    let v = Vmtel::run(
        "[web]\nlisten = \"127.0.0.1:0\"\nauth_token_env = \"VMTEL_TEST_TOKEN\"\n",
        &[("VMTEL_TEST_TOKEN", TOKEN)],
    );
    let (code, _, loc) = v.get("/help/troubleshooting", &[]);
    assert_eq!((code, loc.as_deref()), (303, Some("/login")));
    let (code, body, _) = v.get(
        "/help/troubleshooting",
        &[("Authorization", &format!("Bearer {TOKEN}"))],
    );
    assert_eq!(code, 200);
    assert!(body.contains("<h1 id=\"troubleshooting\">"), "{body}");
}

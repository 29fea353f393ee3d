//! Markdown (a run's `report.md`, an agent's messages) as safe HTML: CommonMark with tables,
//! strikethrough and task lists by pulldown-cmark; raw HTML in the text is shown as text, not
//! interpreted; links keep only `http`, `https`, `mailto` and relative targets (anything else,
//! `javascript:` first, becomes `#`); images become links, so a report cannot make the browser
//! fetch anything by itself.

use pulldown_cmark::{Alignment, CowStr, Event, LinkType, Options, Parser, Tag, TagEnd};

/// Most bytes of Markdown rendered; the rest is dropped with a note.
pub const MAX_MARKDOWN_BYTES: usize = 256 * 1024;

/// `text` as HTML (at most [`MAX_MARKDOWN_BYTES`] of it).
pub fn render(text: &str) -> String {
    let (text, cut) = match text.char_indices().find(|(i, _)| *i >= MAX_MARKDOWN_BYTES) {
        Some((at, _)) => (&text[..at], true),
        None => (text, false),
    };
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_FOOTNOTES;
    let events = Parser::new_ext(text, options).map(|event| match event {
        // Raw HTML is text: a report shows what the agent wrote, markup included, inert.
        Event::Html(html) | Event::InlineHtml(html) => Event::Text(html),
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Link {
            link_type,
            dest_url: safe_url(dest_url),
            title,
            id,
        }),
        Event::Start(Tag::Image {
            dest_url,
            title,
            id,
            ..
        }) => Event::Start(Tag::Link {
            link_type: LinkType::Inline,
            dest_url: safe_url(dest_url),
            title,
            id,
        }),
        Event::End(TagEnd::Image) => Event::End(TagEnd::Link),
        // Column alignment would be a `style` attribute, which the dashboard's CSP refuses.
        Event::Start(Tag::Table(alignments)) => {
            Event::Start(Tag::Table(vec![Alignment::None; alignments.len()]))
        }
        other => other,
    });
    let mut html = String::with_capacity(text.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut html, events);
    if cut {
        html.push_str("<p class=\"note\">(cut: the report is longer than ");
        html.push_str(&(MAX_MARKDOWN_BYTES / 1024).to_string());
        html.push_str(" KB; the whole file is in the run's bundle)</p>\n");
    }
    html
}

/// `url` if it is `http`, `https`, `mailto` or relative, else `#`.
fn safe_url(url: CowStr<'_>) -> CowStr<'_> {
    if is_safe_url(&url) {
        url
    } else {
        CowStr::Borrowed("#")
    }
}

/// Whether a link target is harmless: its scheme (what a browser would take as one, after
/// dropping the whitespace and control characters it ignores) is `http`, `https` or `mailto`,
/// or it has none.
pub fn is_safe_url(url: &str) -> bool {
    let cleaned: String = url
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
        .collect();
    let lowered = cleaned.to_ascii_lowercase();
    // A scheme ends at the first `:` before any `/`, `?` or `#`.
    match lowered.find([':', '/', '?', '#']) {
        Some(at) if lowered[at..].starts_with(':') => {
            let scheme = &lowered[..at];
            matches!(scheme, "http" | "https" | "mailto")
        }
        // No scheme: relative (`//host/...` is protocol-relative, so http(s)).
        _ => true,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn markdown_renders_headings_lists_code_and_tables() {
        let html = render("# Report\n\n- one\n- [x] two\n\n`code` and **bold**\n\n| a | b |\n|---|---|\n| 1 | 2 |\n");
        assert!(html.contains("<h1>Report</h1>"), "{html}");
        assert!(html.contains("<li>one</li>"), "{html}");
        assert!(html.contains("<code>code</code>"), "{html}");
        assert!(html.contains("<strong>bold</strong>"), "{html}");
        assert!(html.contains("<table>"), "{html}");
        let aligned = render("| a | b |\n|--:|:-:|\n| 1 | 2 |\n");
        assert!(!aligned.contains("style="), "{aligned}");
    }

    #[test]
    fn raw_html_is_shown_as_text() {
        let html = render(
            "<script>alert(1)</script>\n\nhi <img src=x onerror=alert(1)> <b onclick=\"x\">b</b>\n\n<iframe src=\"https://evil\"></iframe>",
        );
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("<b "), "{html}");
        assert!(!html.contains("<iframe"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
    }

    #[test]
    fn only_http_mailto_and_relative_links_survive() {
        let html = render(
            "[a](javascript:alert(1)) [b](JaVaScRiPt:alert(1)) [c](java\tscript:alert(1)) \
             [d](data:text/html,<script>alert(1)</script>) [e](vbscript:x) \
             [f](https://example.com/x?y=\"z\") [g](mailto:a@b.c) [h](/tasks/3) [i](#top) \
             <javascript:alert(2)> [j]( javascript:alert(3))",
        );
        for href in hrefs(&html) {
            assert!(is_safe_url(&href), "{href} in {html}");
        }
        assert!(!html.to_lowercase().contains("href=\"javascript"), "{html}");
        assert!(!html.contains("data:"), "{html}");
        assert!(!html.contains("vbscript:"), "{html}");
        assert!(
            html.contains("href=\"https://example.com/x?y=%22z%22\""),
            "{html}"
        );
        assert!(html.contains("href=\"mailto:a@b.c\""), "{html}");
        assert!(html.contains("href=\"/tasks/3\""), "{html}");
        assert!(html.contains("href=\"#top\""), "{html}");
    }

    /// Every `href` value in `html`.
    pub(crate) fn hrefs(html: &str) -> Vec<String> {
        html.split("href=\"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn images_become_links_and_fetch_nothing() {
        let html = render("![logo](https://tracker.example/pixel.png) ![x](javascript:alert(1))");
        assert!(!html.contains("<img"), "{html}");
        assert!(
            html.contains("<a href=\"https://tracker.example/pixel.png\">logo</a>"),
            "{html}"
        );
        assert!(html.contains("<a href=\"#\">x</a>"), "{html}");
    }

    #[test]
    fn huge_reports_are_cut_with_a_note() {
        let text = "word ".repeat(200_000);
        let html = render(&text);
        assert!(html.len() < MAX_MARKDOWN_BYTES + 1024, "{}", html.len());
        assert!(html.contains("(cut: the report is longer than 256 KB"));
    }

    #[test]
    fn url_check_is_on_the_scheme() {
        assert!(is_safe_url("https://x"));
        assert!(is_safe_url("docs/a.md"));
        assert!(is_safe_url("a.md#x:y"));
        assert!(is_safe_url(""));
        assert!(!is_safe_url("javascript:x"));
        assert!(!is_safe_url(" \u{1}javascript:x"));
        assert!(!is_safe_url("file:///etc/passwd"));
    }
}

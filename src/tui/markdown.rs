//! Markdown (a lab step's text) → styled ratatui `Text`, via pulldown-cmark.
//!
//! Supports what step files use: headings, paragraphs, emphasis, inline code, fenced code blocks
//! (shown indented, never run from here), lists, block quotes, links (text plus the address).

use pulldown_cmark::{CodeBlockKind, Event, HeadingLevel, Parser, Tag, TagEnd};
use ratatui::prelude::*;

/// How large to render: presenter mode adds spacing and makes body text bold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scale {
    #[default]
    Normal,
    Presenter,
}

pub fn render(src: &str, scale: Scale) -> Text<'static> {
    let base = if scale == Scale::Presenter {
        Style::new().bold()
    } else {
        Style::new()
    };
    render_styled(src, scale, base)
}

/// Short markdown (a hint, a check's failure advice) in `base` style, each line after `prefix`:
/// inline code, emphasis and lists rendered, no raw backticks.
pub fn render_inline(src: &str, base: Style, prefix: &str) -> Vec<Line<'static>> {
    render_styled(src, Scale::Normal, base)
        .lines
        .into_iter()
        .map(|mut l| {
            l.spans.insert(0, Span::styled(prefix.to_string(), base));
            l
        })
        .collect()
}

/// A code block of a step's text: what the learner may copy, or run in the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snippet {
    pub code: String,
    /// Shell commands (an indented block, or fenced as `sh`, `bash`, `shell`, `console` or with
    /// no language); other blocks (a Containerfile, TOML) can only be copied.
    pub runnable: bool,
}

impl Snippet {
    /// One line for a list: the first line, and how many more follow.
    pub fn summary(&self) -> String {
        let mut lines = self.code.lines();
        let first = lines.next().unwrap_or_default().to_string();
        match lines.count() {
            0 => first,
            n => format!("{first}  (+{n} more line{})", if n == 1 { "" } else { "s" }),
        }
    }
}

/// The code blocks of `src`, in order.
pub fn code_blocks(src: &str) -> Vec<Snippet> {
    let mut out = Vec::new();
    let mut cur: Option<Snippet> = None;
    for ev in Parser::new(src) {
        match ev {
            Event::Start(Tag::CodeBlock(kind)) => {
                let runnable = match kind {
                    CodeBlockKind::Indented => true,
                    CodeBlockKind::Fenced(lang) => {
                        matches!(&*lang, "" | "sh" | "bash" | "shell" | "console")
                    }
                };
                cur = Some(Snippet {
                    code: String::new(),
                    runnable,
                });
            }
            Event::Text(t) => {
                if let Some(c) = &mut cur {
                    c.code.push_str(&t);
                }
            }
            Event::End(TagEnd::CodeBlock) => {
                if let Some(mut c) = cur.take() {
                    c.code = c.code.trim_end().to_string();
                    if !c.code.is_empty() {
                        out.push(c);
                    }
                }
            }
            _ => {}
        }
    }
    out
}

fn render_styled(src: &str, scale: Scale, base: Style) -> Text<'static> {
    let mut r = Renderer {
        lines: Vec::new(),
        cur: Vec::new(),
        styles: vec![base],
        lists: Vec::new(),
        in_code: false,
        quote: 0,
        scale,
        link: None,
    };
    for ev in Parser::new(src) {
        r.event(ev);
    }
    r.flush();
    while r.lines.last().is_some_and(|l| l.spans.is_empty()) {
        r.lines.pop();
    }
    Text::from(r.lines)
}

struct Renderer {
    lines: Vec<Line<'static>>,
    cur: Vec<Span<'static>>,
    styles: Vec<Style>,
    /// One entry per open list: the next number for ordered lists.
    lists: Vec<Option<u64>>,
    in_code: bool,
    quote: usize,
    scale: Scale,
    link: Option<String>,
}

impl Renderer {
    fn style(&self) -> Style {
        *self.styles.last().unwrap_or(&Style::new())
    }
    fn push_style(&mut self, f: impl FnOnce(Style) -> Style) {
        let s = f(self.style());
        self.styles.push(s);
    }
    fn pop_style(&mut self) {
        if self.styles.len() > 1 {
            self.styles.pop();
        }
    }
    fn prefix(&self) -> Vec<Span<'static>> {
        let mut p = Vec::new();
        for _ in 0..self.quote {
            p.push(Span::styled("▌ ", Style::new().fg(Color::DarkGray)));
        }
        p
    }
    fn flush(&mut self) {
        if !self.cur.is_empty() {
            let mut spans = self.prefix();
            spans.append(&mut self.cur);
            self.lines.push(Line::from(spans));
        }
    }
    fn blank(&mut self) {
        self.flush();
        if self.lines.last().is_some_and(|l| !l.spans.is_empty()) {
            self.lines.push(Line::raw(""));
            if self.scale == Scale::Presenter {
                self.lines.push(Line::raw(""));
            }
        }
    }
    fn text(&mut self, t: &str) {
        let st = self.style();
        self.cur.push(Span::styled(t.to_string(), st));
    }

    fn event(&mut self, ev: Event) {
        match ev {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::Text(t) if self.in_code => {
                for l in t.lines() {
                    self.cur.push(Span::styled(
                        format!("    {l}"),
                        Style::new().fg(Color::LightGreen),
                    ));
                    self.flush();
                }
            }
            Event::Text(t) => self.text(&t),
            Event::Code(c) => {
                self.cur.push(Span::styled(
                    c.to_string(),
                    self.style().fg(Color::LightGreen),
                ));
            }
            Event::SoftBreak => self.text(" "),
            Event::HardBreak => self.flush(),
            Event::Rule => {
                self.blank();
                self.lines.push(Line::styled(
                    "─".repeat(40),
                    Style::new().fg(Color::DarkGray),
                ));
                self.blank();
            }
            Event::Html(h) | Event::InlineHtml(h) => self.text(&h),
            Event::TaskListMarker(done) => self.text(if done { "[x] " } else { "[ ] " }),
            _ => {}
        }
    }

    fn start(&mut self, tag: Tag) {
        match tag {
            Tag::Heading { level, .. } => {
                self.blank();
                let color = match level {
                    HeadingLevel::H1 => Color::Cyan,
                    HeadingLevel::H2 => Color::LightCyan,
                    _ => Color::White,
                };
                self.push_style(|s| s.fg(color).bold());
                if level == HeadingLevel::H1 {
                    self.push_style(|s| s.underlined());
                }
            }
            Tag::Paragraph if self.lists.is_empty() => self.blank(),
            Tag::Emphasis => self.push_style(|s| s.italic()),
            Tag::Strong => self.push_style(|s| s.bold()),
            Tag::Strikethrough => self.push_style(|s| s.crossed_out()),
            Tag::BlockQuote(_) => {
                self.blank();
                self.quote += 1;
            }
            Tag::CodeBlock(kind) => {
                self.blank();
                if let CodeBlockKind::Fenced(lang) = kind
                    && !lang.is_empty()
                {
                    self.cur.push(Span::styled(
                        format!("  {lang}"),
                        Style::new().fg(Color::DarkGray),
                    ));
                    self.flush();
                }
                self.in_code = true;
            }
            Tag::List(start) => {
                if self.lists.is_empty() {
                    self.blank();
                } else {
                    self.flush();
                }
                self.lists.push(start);
            }
            Tag::Item => {
                self.flush();
                let depth = self.lists.len().saturating_sub(1);
                let marker = match self.lists.last_mut() {
                    Some(Some(n)) => {
                        let m = format!("{n}. ");
                        *n += 1;
                        m
                    }
                    _ => "• ".to_string(),
                };
                self.cur.push(Span::raw("  ".repeat(depth + 1)));
                self.cur
                    .push(Span::styled(marker, Style::new().fg(Color::Yellow)));
            }
            Tag::Link { dest_url, .. } => {
                self.link = Some(dest_url.to_string());
                self.push_style(|s| s.fg(Color::LightBlue).underlined());
            }
            _ => {}
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Heading(level) => {
                self.pop_style();
                if level == HeadingLevel::H1 {
                    self.pop_style();
                }
                self.blank();
            }
            TagEnd::Paragraph => {
                if self.lists.is_empty() {
                    self.blank();
                } else {
                    self.flush();
                }
            }
            TagEnd::Emphasis | TagEnd::Strong | TagEnd::Strikethrough => self.pop_style(),
            TagEnd::BlockQuote(_) => {
                self.flush();
                self.quote = self.quote.saturating_sub(1);
                self.blank();
            }
            TagEnd::CodeBlock => {
                self.in_code = false;
                self.blank();
            }
            TagEnd::List(_) => {
                self.flush();
                self.lists.pop();
                if self.lists.is_empty() {
                    self.blank();
                }
            }
            TagEnd::Item => self.flush(),
            TagEnd::Link => {
                self.pop_style();
                if let Some(url) = self.link.take() {
                    self.cur.push(Span::styled(
                        format!(" <{url}>"),
                        Style::new().fg(Color::DarkGray),
                    ));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(t: &Text) -> Vec<String> {
        t.lines
            .iter()
            .map(|l| l.spans.iter().map(|s| s.content.as_ref()).collect())
            .collect()
    }

    #[test]
    fn code_blocks_are_snippets_and_only_shell_ones_run() {
        let src = "Try it:\n\n    touch /usr/x\n    findmnt /usr\n\nThen:\n\n```dockerfile\nFROM x\n```\n\n```sh\nls /\n```\n";
        let s = code_blocks(src);
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].code, "touch /usr/x\nfindmnt /usr");
        assert!(s[0].runnable);
        assert_eq!(s[0].summary(), "touch /usr/x  (+1 more line)");
        assert_eq!((s[1].code.as_str(), s[1].runnable), ("FROM x", false));
        assert_eq!((s[2].code.as_str(), s[2].runnable), ("ls /", true));
        assert!(code_blocks("no `code` block here").is_empty());
    }

    #[test]
    fn headings_paragraphs_code_and_lists() {
        let md = "# Boot it\n\nRun `bootlab vm boot` and **watch**.\n\n```sh\nostree admin status\n```\n\n- one\n- two\n\n1. first\n2. second\n";
        let t = render(md, Scale::Normal);
        assert_eq!(
            plain(&t),
            [
                "Boot it",
                "",
                "Run bootlab vm boot and watch.",
                "",
                "  sh",
                "    ostree admin status",
                "",
                "  • one",
                "  • two",
                "",
                "  1. first",
                "  2. second",
            ]
        );
        let h = &t.lines[0].spans[0];
        assert!(h.style.add_modifier.contains(Modifier::BOLD));
        let code = &t.lines[2].spans[1];
        assert_eq!(code.content, "bootlab vm boot");
        assert_eq!(code.style.fg, Some(Color::LightGreen));
        let strong = &t.lines[2].spans[3];
        assert!(strong.style.add_modifier.contains(Modifier::BOLD));
    }

    #[test]
    fn presenter_scale_is_bold_and_spaced() {
        let t = render("one\n\ntwo", Scale::Presenter);
        assert_eq!(plain(&t), ["one", "", "", "two"]);
        assert!(
            t.lines[0].spans[0]
                .style
                .add_modifier
                .contains(Modifier::BOLD)
        );
    }

    #[test]
    fn hints_and_failure_advice_lose_their_backticks() {
        let red = Style::new().fg(Color::LightRed);
        let l = render_inline("Run `findmnt /usr` and **look**:", red, "    ");
        assert_eq!(
            plain(&Text::from(l.clone())),
            ["    Run findmnt /usr and look:"]
        );
        assert_eq!(l[0].spans[0].content, "    ");
        let code = l[0]
            .spans
            .iter()
            .find(|s| s.content == "findmnt /usr")
            .unwrap();
        assert_eq!(code.style.fg, Some(Color::LightGreen));
        let bold = l[0].spans.iter().find(|s| s.content == "look").unwrap();
        assert!(bold.style.add_modifier.contains(Modifier::BOLD));
        assert_eq!(bold.style.fg, Some(Color::LightRed));
    }

    #[test]
    fn links_keep_their_address() {
        let t = render("see [docs](https://x.y/z)", Scale::Normal);
        assert_eq!(plain(&t), ["see docs <https://x.y/z>"]);
    }
}

//! A log pane: a bounded ring buffer of lines, follow mode that stops when you scroll up and
//! resumes at the end, and a `/` filter whose matches are highlighted.

use ratatui::prelude::*;
use ratatui::widgets::{Block, Borders, Paragraph};
use std::collections::VecDeque;
use std::sync::Arc;

/// Lines kept per pane: enough for a full image build, small enough to never matter for memory.
pub const DEFAULT_CAPACITY: usize = 5000;

#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// The stage that produced the line (`build`, `console`…), shown as a dim prefix. Shared
    /// by the lines of one stage (a build log has a handful of stages and many lines).
    pub stage: Arc<str>,
    pub text: Box<str>,
    pub error: bool,
}

#[derive(Debug, Clone)]
pub struct LogPane {
    lines: VecDeque<LogLine>,
    capacity: usize,
    /// Lines dropped off the front since the pane was made.
    dropped: u64,
    /// Lines that pass the filter, kept as lines come and go: pushing a line and drawing a
    /// frame never walk the whole buffer.
    visible_count: usize,
    /// How many visible (filtered) lines lie below the bottom of the view; 0 = following.
    from_bottom: usize,
    /// The applied filter (case-insensitive substring).
    filter: Option<String>,
    /// The filter being typed after `/`, not applied yet.
    typing: Option<String>,
    /// Show each line's stage as a prefix (a build's stages); a console has one source.
    show_stage: bool,
    /// Rows of the view, remembered from the last draw: PgUp/PgDn move by it, and scrolling
    /// stops when the oldest line reaches the top.
    viewport: std::cell::Cell<usize>,
}

impl Default for LogPane {
    fn default() -> Self {
        LogPane::with_capacity(DEFAULT_CAPACITY)
    }
}

impl LogPane {
    pub fn with_capacity(capacity: usize) -> LogPane {
        LogPane {
            lines: VecDeque::with_capacity(capacity.min(1024)),
            capacity: capacity.max(1),
            dropped: 0,
            visible_count: 0,
            from_bottom: 0,
            filter: None,
            typing: None,
            viewport: std::cell::Cell::new(10),
            show_stage: true,
        }
    }

    /// A pane for one source (a serial console): no stage column.
    pub fn console(capacity: usize) -> LogPane {
        LogPane {
            show_stage: false,
            ..LogPane::with_capacity(capacity)
        }
    }

    pub fn push(&mut self, stage: &str, text: &str, error: bool) {
        let stage = match self.lines.back() {
            Some(l) if &*l.stage == stage => l.stage.clone(),
            _ => Arc::from(stage),
        };
        let line = LogLine {
            stage,
            text: sanitize(text).into_boxed_str(),
            error,
        };
        let visible = self.matches(&line);
        if self.lines.len() == self.capacity {
            // Counting from the bottom, dropping the oldest line never moves the view.
            if let Some(old) = self.lines.pop_front()
                && self.matches(&old)
            {
                self.visible_count -= 1;
            }
            self.dropped += 1;
        }
        self.lines.push_back(line);
        if visible {
            self.visible_count += 1;
            if self.from_bottom > 0 {
                self.from_bottom += 1;
            }
        }
        self.clamp();
    }

    pub fn clear(&mut self) {
        self.lines.clear();
        self.visible_count = 0;
        self.from_bottom = 0;
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
    pub fn following(&self) -> bool {
        self.from_bottom == 0
    }
    pub fn filter(&self) -> Option<&str> {
        self.filter.as_deref()
    }
    pub fn is_typing_filter(&self) -> bool {
        self.typing.is_some()
    }
    pub fn typing(&self) -> Option<&str> {
        self.typing.as_deref()
    }

    fn matches(&self, l: &LogLine) -> bool {
        match &self.filter {
            None => true,
            Some(f) => contains_ci(&l.text, f) || contains_ci(&l.stage, f),
        }
    }

    /// The lines that pass the filter, oldest first.
    pub fn visible(&self) -> Vec<&LogLine> {
        self.lines.iter().filter(|l| self.matches(l)).collect()
    }

    /// Tell the pane how many rows it shows (draw does this).
    pub fn set_viewport(&self, rows: usize) {
        self.viewport.set(rows.max(1));
    }

    /// How many lines pass the filter.
    pub fn visible_len(&self) -> usize {
        self.visible_count
    }

    fn clamp(&mut self) {
        let n = self.visible_count;
        self.from_bottom = self.from_bottom.min(n.saturating_sub(self.viewport.get()));
    }

    /// Scroll up: stops following.
    pub fn scroll_up(&mut self, n: usize) {
        self.from_bottom += n;
        self.clamp();
    }
    /// Scroll down: reaching the end follows again.
    pub fn scroll_down(&mut self, n: usize) {
        self.from_bottom = self.from_bottom.saturating_sub(n);
    }
    fn page(&self) -> usize {
        self.viewport.get().saturating_sub(1).max(1)
    }
    pub fn page_up(&mut self) {
        self.scroll_up(self.page());
    }
    pub fn page_down(&mut self) {
        self.scroll_down(self.page());
    }
    pub fn top(&mut self) {
        self.from_bottom = usize::MAX;
        self.clamp();
    }
    pub fn follow(&mut self) {
        self.from_bottom = 0;
    }

    pub fn start_filter(&mut self) {
        self.typing = Some(self.filter.clone().unwrap_or_default());
    }
    pub fn type_char(&mut self, c: char) {
        if let Some(t) = &mut self.typing {
            t.push(c);
        }
    }
    pub fn backspace(&mut self) {
        if let Some(t) = &mut self.typing {
            t.pop();
        }
    }
    /// Apply the typed filter; an empty one clears it. The view jumps to the newest match.
    pub fn apply_filter(&mut self) {
        let t = self.typing.take().unwrap_or_default();
        self.set_filter(if t.is_empty() { None } else { Some(t) });
    }
    pub fn clear_filter(&mut self) {
        self.typing = None;
        self.set_filter(None);
    }
    pub fn set_filter(&mut self, f: Option<String>) {
        self.filter = f;
        self.visible_count = self.lines.iter().filter(|l| self.matches(l)).count();
        self.from_bottom = 0;
    }

    /// The lines a view of `height` rows shows now (oldest first). Walks back from the newest
    /// line only as far as the view reaches.
    pub fn window(&self, height: usize) -> Vec<&LogLine> {
        let mut v: Vec<&LogLine> = self
            .lines
            .iter()
            .rev()
            .filter(|l| self.matches(l))
            .skip(self.from_bottom)
            .take(height)
            .collect();
        v.reverse();
        v
    }

    /// Draw into `area` with a titled border. Pure apart from remembering the page size.
    pub fn draw(&self, f: &mut Frame, area: Rect, title: &str, empty_hint: &str, focused: bool) {
        let mut t = format!(" {title} ");
        if let Some(flt) = &self.filter {
            t.push_str(&format!(
                "· filter \"{flt}\" ({} lines) ",
                self.visible_count
            ));
        }
        t.push_str(if self.following() {
            "· following "
        } else {
            "· paused (End follows) "
        });
        if self.dropped > 0 {
            t.push_str(&format!("· {} older lines dropped ", self.dropped));
        }
        let border = if focused {
            Style::new().fg(Color::Cyan)
        } else {
            Style::new().fg(Color::DarkGray)
        };
        let block = Block::new()
            .borders(Borders::ALL)
            .border_style(border)
            .title(t);
        let inner = block.inner(area);
        f.render_widget(block, area);
        let mut height = inner.height as usize;
        let prompt = self.typing.as_ref().map(|t| {
            Line::from(vec![
                Span::styled("/", Style::new().fg(Color::Yellow).bold()),
                Span::raw(t.clone()),
                Span::styled("█", Style::new().fg(Color::Yellow)),
                Span::styled(
                    "  (Enter applies, Esc clears)",
                    Style::new().fg(Color::DarkGray),
                ),
            ])
        });
        if prompt.is_some() {
            height = height.saturating_sub(1);
        }
        self.set_viewport(height);
        let mut lines: Vec<Line> = if self.lines.is_empty() {
            vec![Line::styled(
                empty_hint.to_string(),
                Style::new().fg(Color::DarkGray),
            )]
        } else {
            self.window(height)
                .into_iter()
                .map(|l| render_line(l, self.filter.as_deref(), self.show_stage))
                .collect()
        };
        if self.filter.is_some() && !self.lines.is_empty() && self.visible_count == 0 {
            lines = vec![Line::styled(
                "no line matches the filter (Esc after / clears it)",
                Style::new().fg(Color::DarkGray),
            )];
        }
        if let Some(p) = prompt {
            while lines.len() < height {
                lines.push(Line::raw(""));
            }
            lines.push(p);
        }
        f.render_widget(Paragraph::new(lines), inner);
    }
}

/// What a terminal cell can show: escape sequences (colours, cursor moves, bracketed paste from a
/// guest's console) and control characters would be interpreted by the real terminal and wreck
/// the screen, so they go; tabs become spaces.
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.next() {
                // CSI: parameters, then one final byte in @..~
                Some('[') => {
                    for n in chars.by_ref() {
                        if ('@'..='~').contains(&n) {
                            break;
                        }
                    }
                }
                // OSC: up to BEL or ESC \
                Some(']') => {
                    while let Some(n) = chars.next() {
                        if n == '\x07' {
                            break;
                        }
                        if n == '\x1b' {
                            chars.next();
                            break;
                        }
                    }
                }
                // Two-character sequences (ESC c, ESC =, charset selection ESC ( B).
                Some('(' | ')') => {
                    chars.next();
                }
                _ => {}
            },
            '\t' => out.push_str("    "),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

fn contains_ci(hay: &str, needle: &str) -> bool {
    hay.to_lowercase().contains(&needle.to_lowercase())
}

/// One line with its stage prefix and filter matches highlighted.
fn render_line<'a>(l: &'a LogLine, filter: Option<&str>, show_stage: bool) -> Line<'a> {
    let base = if l.error {
        Style::new().fg(Color::LightRed)
    } else {
        Style::new()
    };
    let mut spans = vec![];
    if show_stage {
        spans.push(Span::styled(
            format!("{:>8} │ ", truncate(&l.stage, 8)),
            Style::new().fg(Color::DarkGray),
        ));
    }
    spans.extend(highlight(&l.text, filter, base));
    Line::from(spans)
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// Split `text` into spans with every case-insensitive match of `needle` highlighted.
pub fn highlight(text: &str, needle: Option<&str>, base: Style) -> Vec<Span<'static>> {
    let hl = Style::new().fg(Color::Black).bg(Color::Yellow);
    let Some(needle) = needle.filter(|n| !n.is_empty()) else {
        return vec![Span::styled(text.to_string(), base)];
    };
    let lower = text.to_lowercase();
    let nl = needle.to_lowercase();
    // Lowercasing can change byte lengths for some scripts; fall back to no highlight then.
    if lower.len() != text.len() {
        return vec![Span::styled(text.to_string(), base)];
    }
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(i) = lower[pos..].find(&nl) {
        let s = pos + i;
        if s > pos {
            out.push(Span::styled(text[pos..s].to_string(), base));
        }
        out.push(Span::styled(text[s..s + nl.len()].to_string(), hl));
        pos = s + nl.len();
    }
    if pos < text.len() {
        out.push(Span::styled(text[pos..].to_string(), base));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pane(n: usize) -> LogPane {
        let mut p = LogPane::with_capacity(100);
        p.set_viewport(3);
        for i in 0..n {
            p.push("build", &format!("line {i}"), false);
        }
        p
    }

    fn texts(v: Vec<&LogLine>) -> Vec<String> {
        v.into_iter().map(|l| l.text.to_string()).collect()
    }

    #[test]
    fn follows_new_lines_at_the_end() {
        let mut p = pane(20);
        assert!(p.following());
        assert_eq!(texts(p.window(3)), ["line 17", "line 18", "line 19"]);
        p.push("build", "line 20", false);
        assert_eq!(texts(p.window(1)), ["line 20"]);
    }

    #[test]
    fn scrolling_up_stops_following_and_keeps_the_view_still() {
        let mut p = pane(20);
        p.scroll_up(5);
        assert!(!p.following());
        let before = texts(p.window(3));
        assert_eq!(before, ["line 12", "line 13", "line 14"]);
        p.push("build", "line 20", false);
        p.push("build", "line 21", false);
        assert_eq!(
            texts(p.window(3)),
            before,
            "new lines must not move a paused view"
        );
    }

    #[test]
    fn scrolling_back_to_the_end_resumes_following() {
        let mut p = pane(20);
        p.scroll_up(5);
        p.scroll_down(2);
        assert!(!p.following());
        p.scroll_down(10);
        assert!(p.following());
        p.push("build", "new", false);
        assert_eq!(texts(p.window(1)), ["new"]);
        p.scroll_up(3);
        p.follow();
        assert!(p.following());
    }

    #[test]
    fn scrolling_up_stops_when_the_oldest_line_is_at_the_top() {
        let mut p = pane(5);
        p.scroll_up(1000);
        assert_eq!(texts(p.window(3)), ["line 0", "line 1", "line 2"]);
        p.follow();
        p.top();
        assert_eq!(texts(p.window(3)), ["line 0", "line 1", "line 2"]);
        // Everything fits: there is nothing to scroll, and the pane keeps following.
        let mut small = pane(2);
        small.scroll_up(1);
        assert!(small.following());
    }

    #[test]
    fn page_keys_move_by_a_screen() {
        let mut p = pane(20);
        p.set_viewport(5);
        p.page_up();
        assert_eq!(
            texts(p.window(5)),
            ["line 11", "line 12", "line 13", "line 14", "line 15"]
        );
        p.page_down();
        assert!(p.following());
    }

    #[test]
    fn buffer_is_bounded_and_counts_what_it_dropped() {
        let mut p = LogPane::with_capacity(10);
        p.set_viewport(2);
        for i in 0..1000 {
            p.push("s", &format!("l{i}"), false);
        }
        assert_eq!(p.len(), 10);
        assert_eq!(p.dropped(), 990);
        assert_eq!(texts(p.window(2)), ["l998", "l999"]);
        assert_eq!(&*p.visible()[0].text, "l990");
        assert_eq!(p.visible_len(), 10);
    }

    #[test]
    fn filter_keeps_matching_lines_case_insensitively() {
        let mut p = LogPane::with_capacity(100);
        p.set_viewport(3);
        for l in [
            "STEP 1/3: FROM base",
            "installing",
            "STEP 2/3: RUN",
            "Error: boom",
            "step 3/3",
        ] {
            p.push("build", l, false);
        }
        p.start_filter();
        for c in "step".chars() {
            p.type_char(c);
        }
        assert!(p.is_typing_filter());
        assert_eq!(p.visible().len(), 5, "not applied while typing");
        p.apply_filter();
        assert_eq!(p.filter(), Some("step"));
        assert_eq!(
            texts(p.visible()),
            ["STEP 1/3: FROM base", "STEP 2/3: RUN", "step 3/3"]
        );
        assert_eq!(p.visible_len(), 3);
        p.clear_filter();
        assert_eq!(p.visible().len(), 5);
        assert_eq!(p.visible_len(), 5);
    }

    #[test]
    fn empty_filter_clears() {
        let mut p = pane(3);
        p.set_filter(Some("1".into()));
        p.start_filter();
        p.backspace();
        p.apply_filter();
        assert_eq!(p.filter(), None);
    }

    #[test]
    fn escape_sequences_and_control_characters_never_reach_the_terminal() {
        assert_eq!(
            sanitize("\x1b[0;32m  OK  \x1b[0m Started"),
            "  OK   Started"
        );
        assert_eq!(sanitize("\x1b[?2004hroot@bootlab:~# "), "root@bootlab:~# ");
        assert_eq!(sanitize("\x1b]0;title\x07a\tb\r"), "a    b");
        assert_eq!(sanitize("\x1b(Bplain\x08"), "plain");
    }

    #[test]
    fn highlight_marks_every_match() {
        let spans = highlight("Step one, STEP two", Some("step"), Style::new());
        let parts: Vec<&str> = spans.iter().map(|s| s.content.as_ref()).collect();
        assert_eq!(parts, ["Step", " one, ", "STEP", " two"]);
        assert_eq!(spans[0].style.bg, Some(Color::Yellow));
        assert_eq!(spans[1].style.bg, None);
    }

    #[test]
    fn paused_view_with_filter_ignores_non_matching_new_lines() {
        let mut p = pane(20);
        p.set_filter(Some("line 1".into())); // line 1, 10..19 = 11 lines
        p.scroll_up(2);
        let before = texts(p.window(2));
        p.push("build", "unrelated", false);
        assert_eq!(texts(p.window(2)), before);
        p.push("build", "line 1000", false);
        assert_eq!(texts(p.window(2)), before);
    }
}

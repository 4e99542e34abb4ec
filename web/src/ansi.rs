//! ANSI colours in logs (SGR escapes: `ESC [ … m`), as spans of text with
//! a colour and weight, for the page to show as the terminal would. Every
//! other escape is dropped, so none reaches the page as garbage.

/// How a span of text looks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Style {
    /// One of the 16 terminal colours (0–7, bright 8–15).
    pub fg: Option<u8>,
    pub bold: bool,
}

impl Style {
    /// The CSS classes of the style (`fgN`, `b`), or "".
    pub fn classes(&self) -> String {
        let mut classes = Vec::new();
        if let Some(fg) = self.fg {
            classes.push(format!("fg{fg}"));
        }
        if self.bold {
            classes.push("b".to_string());
        }
        classes.join(" ")
    }

    fn apply(&mut self, params: &str) {
        let codes: Vec<u16> = if params.is_empty() {
            vec![0]
        } else {
            params.split(';').map(|p| p.parse().unwrap_or(0)).collect()
        };
        let mut codes = codes.into_iter();
        while let Some(code) = codes.next() {
            match code {
                0 => *self = Style::default(),
                1 => self.bold = true,
                22 => self.bold = false,
                30..=37 => self.fg = Some((code - 30) as u8),
                39 => self.fg = None,
                90..=97 => self.fg = Some((code - 90 + 8) as u8),
                // 256 colours and RGB: their arguments are skipped.
                38 => match codes.next() {
                    Some(5) => {
                        let n = codes.next().unwrap_or(0);
                        self.fg = (n < 16).then_some(n as u8);
                    }
                    Some(2) => {
                        codes.nth(2);
                        self.fg = None;
                    }
                    _ => {}
                },
                _ => {}
            }
        }
    }
}

/// `text` as spans, from `style` on; the style at its end (a line's
/// colour goes on into the next, as in a terminal).
pub fn spans(text: &str, mut style: Style) -> (Vec<(Style, String)>, Style) {
    let mut out: Vec<(Style, String)> = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            current.push(c);
            continue;
        }
        // CSI: ESC [ params final; anything else after ESC is one char.
        if chars.peek() == Some(&'[') {
            chars.next();
            let mut params = String::new();
            let mut last = None;
            for p in chars.by_ref() {
                if ('\u{40}'..='\u{7e}').contains(&p) {
                    last = Some(p);
                    break;
                }
                params.push(p);
            }
            if last == Some('m') {
                if !current.is_empty() {
                    out.push((style, std::mem::take(&mut current)));
                }
                style.apply(&params);
            }
        } else {
            chars.next();
        }
    }
    if !current.is_empty() {
        out.push((style, current));
    }
    (out, style)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_become_spans_and_other_escapes_go() {
        let (got, end) = spans(
            "a\u{1b}[31mred\u{1b}[1;92m bold green\u{1b}[0m\u{1b}[2Kplain",
            Style::default(),
        );
        let texts: Vec<(&str, String)> =
            got.iter().map(|(s, t)| (t.as_str(), s.classes())).collect();
        assert_eq!(
            texts,
            [
                ("a", String::new()),
                ("red", "fg1".to_string()),
                (" bold green", "fg10 b".to_string()),
                ("plain", String::new()),
            ]
        );
        assert_eq!(end, Style::default());
        // A colour left on goes on.
        let (_, end) = spans("\u{1b}[33myellow", Style::default());
        assert_eq!(end.fg, Some(3));
        let (more, _) = spans("more", end);
        assert_eq!(more[0].0.classes(), "fg3");
    }

    #[test]
    fn broken_escapes_never_panic_or_leak() {
        for text in [
            "\u{1b}",
            "\u{1b}[",
            "\u{1b}[31",
            "x\u{1b}[38;5m",
            "\u{1b}[38;2;1m",
            "\u{1b}]0;title\u{7}",
        ] {
            let (got, _) = spans(text, Style::default());
            assert!(got.iter().all(|(_, t)| !t.contains('\u{1b}')), "{text:?}");
        }
    }
}

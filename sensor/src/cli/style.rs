//! Terminal styling: colour only when stdout is a terminal, and never when
//! `NO_COLOR` is set (no-color.org) or `TERM=dumb`.

use std::io::IsTerminal;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub colour: bool,
}

impl Style {
    /// The style for stdout as it is now.
    pub fn stdout() -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
        Self {
            colour: std::io::stdout().is_terminal() && !no_color && !dumb,
        }
    }

    /// A table header: reverse video, like top's.
    pub fn header(self, text: &str) -> String {
        self.wrap("\x1b[7m", text)
    }

    /// Something the operator should act on: bold red.
    pub fn alert(self, text: &str) -> String {
        self.wrap("\x1b[1;31m", text)
    }

    /// Secondary text: dim.
    pub fn dim(self, text: &str) -> String {
        self.wrap("\x1b[2m", text)
    }

    fn wrap(self, code: &str, text: &str) -> String {
        if self.colour {
            format!("{code}{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_without_colour() {
        let plain = Style { colour: false };
        assert_eq!(plain.header("NAME"), "NAME");
        let colour = Style { colour: true };
        assert_eq!(colour.alert("x"), "\x1b[1;31mx\x1b[0m");
    }
}

//! The results channel: the guest's second serial port, a file read here as it grows. One line each:
//!
//! * `RESULT name pass|fail detail` — one check;
//! * `EXPECT agent N key op value` — a check of agent N's emulator summary (op `=` or `>=`), made once
//!   the emulators have stopped;
//! * `REQUEST reset-agent N` — reset agent N now (SIGUSR1 to its emulator: the chassis' HRESET);
//! * `REQUEST pause-agent N`, `REQUEST resume-agent N` — freeze agent N's emulator (SIGSTOP: a board
//!   that stops answering, its memory still there) and let it run on (SIGCONT);
//! * `END` — the suite is over (the guest then powers off).
//!
//! Other lines (`BEGIN`, `SAY`, `FIGURE`) are not for the suite driver.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// One check's outcome.
#[derive(Debug, Clone)]
pub(crate) struct Check {
    pub name: String,
    pub pass: bool,
    pub detail: String,
}

/// What the channel said so far.
#[derive(Default)]
pub(super) struct Channel {
    reader: LineReader,
    pub checks: Vec<Check>,
    pub expects: Vec<Expect>,
    pub ended: bool,
}

impl Channel {
    /// Take the complete lines `path` gained since the last call (shown as they come when `live`);
    /// returns what the guest requested of which agent, each below `agents`, in order. Every line,
    /// the last ones before QEMU exits included, is taken the same way: a malformed one or a request
    /// for an agent that does not exist is a failed check.
    pub fn take(&mut self, path: &Path, agents: u32, live: bool) -> Vec<(AgentRequest, u32)> {
        let mut requests = Vec::new();
        for line in self.reader.new_lines(path) {
            if live {
                show_live(&line);
            }
            match parse_line(&line) {
                Some(Line::Result(c)) => self.checks.push(c),
                Some(Line::Expect(e)) => self.expects.push(e),
                Some(Line::Request(r, n)) if n < agents => requests.push((r, n)),
                Some(Line::Request(r, n)) => self.checks.push(Check {
                    name: "guest-request".into(),
                    pass: false,
                    detail: format!("{} of agent {n} requested; there are {agents}", r.word()),
                }),
                Some(Line::End) => self.ended = true,
                Some(Line::Malformed(text)) => self.checks.push(Check {
                    name: "results-channel".into(),
                    pass: false,
                    detail: format!("unparsable line: {text}"),
                }),
                None => {}
            }
        }
        requests
    }
}

/// What the guest may ask of an agent's emulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AgentRequest {
    /// SIGUSR1: the chassis' HRESET.
    Reset,
    /// SIGSTOP: the board stops answering.
    Pause,
    /// SIGCONT: it goes on.
    Resume,
}

impl AgentRequest {
    /// The request's word on the results channel (`REQUEST <word>-agent N`).
    pub fn word(self) -> &'static str {
        match self {
            AgentRequest::Reset => "reset",
            AgentRequest::Pause => "pause",
            AgentRequest::Resume => "resume",
        }
    }
}

/// Reads the complete lines appended to a file since the last call.
#[derive(Default)]
struct LineReader {
    offset: u64,
    partial: String,
}

impl LineReader {
    fn new_lines(&mut self, path: &Path) -> Vec<String> {
        let Ok(mut f) = File::open(path) else { return Vec::new() };
        let mut buf = Vec::new();
        if f.seek(SeekFrom::Start(self.offset)).is_err() || f.read_to_end(&mut buf).is_err() {
            return Vec::new();
        }
        self.offset += buf.len() as u64;
        self.partial.push_str(&String::from_utf8_lossy(&buf));
        let mut lines = Vec::new();
        while let Some(at) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=at).collect();
            let line = line.trim_matches(|c: char| c.is_whitespace() || c == '\0').to_string();
            if !line.is_empty() {
                lines.push(line);
            }
        }
        lines
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Expect {
    pub agent: u32,
    key: String,
    at_least: bool,
    value: u64,
}

impl Expect {
    pub fn check(&self, summary: &str) -> Check {
        let op = if self.at_least { ">=" } else { "=" };
        let name = format!("agent{}-{}", self.agent, self.key.replace('_', "-"));
        let got = json_u64(summary, &self.key);
        let pass = got.is_some_and(|v| if self.at_least { v >= self.value } else { v == self.value });
        let detail = match got {
            Some(v) => format!("{} = {v} (expected {op} {})", self.key, self.value),
            None => format!("no {} in the emulator's summary", self.key),
        };
        Check { name, pass, detail }
    }
}

#[derive(Debug, Clone)]
enum Line {
    Result(Check),
    Expect(Expect),
    Request(AgentRequest, u32),
    End,
    Malformed(String),
}

/// A results-channel line as the demo shows it: the guest's `SAY` text as it is, each check as a tick
/// or a cross; nothing else.
fn show_live(line: &str) {
    if let Some(text) = line.strip_prefix("SAY ") {
        println!("{text}");
    } else if line == "SAY" {
        println!();
    } else if let Some(Line::Result(c)) = parse_line(line) {
        if c.pass {
            println!("  ✓ {}", c.name);
        } else {
            println!("  ✗ {}: {}", c.name, c.detail);
        }
    }
}

/// One line of the results channel; `None` for lines that are not for the harness (BEGIN, SAY, noise).
fn parse_line(line: &str) -> Option<Line> {
    let mut words = line.split_whitespace();
    let bad = || Some(Line::Malformed(line.to_string()));
    match words.next()? {
        "RESULT" => {
            let (Some(name), Some(status)) = (words.next(), words.next()) else { return bad() };
            let pass = match status {
                "pass" => true,
                "fail" => false,
                _ => return bad(),
            };
            let detail = words.collect::<Vec<_>>().join(" ");
            Some(Line::Result(Check { name: name.to_string(), pass, detail }))
        }
        "EXPECT" => {
            let fields: Vec<&str> = words.collect();
            let ["agent", n, key, op, value] = fields.as_slice() else { return bad() };
            let (Ok(agent), Ok(value)) = (n.parse(), value.parse()) else { return bad() };
            let at_least = match *op {
                "=" => false,
                ">=" => true,
                _ => return bad(),
            };
            Some(Line::Expect(Expect { agent, key: key.to_string(), at_least, value }))
        }
        "REQUEST" => match (words.next(), words.next().map(str::parse::<u32>)) {
            (Some("reset-agent"), Some(Ok(n))) => Some(Line::Request(AgentRequest::Reset, n)),
            (Some("pause-agent"), Some(Ok(n))) => Some(Line::Request(AgentRequest::Pause, n)),
            (Some("resume-agent"), Some(Ok(n))) => Some(Line::Request(AgentRequest::Resume, n)),
            _ => bad(),
        },
        "END" => Some(Line::End),
        _ => None,
    }
}

/// The raw text of `"key":` in the emulator's flat summary object.
fn json_raw<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let at = text.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = text[at..].trim_start();
    if let Some(s) = rest.strip_prefix('"') {
        return Some(&s[..s.find('"')?]);
    }
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    Some(rest[..end].trim())
}

pub(crate) fn json_u64(text: &str, key: &str) -> Option<u64> {
    json_raw(text, key)?.parse().ok()
}

pub(super) fn json_str(text: &str, key: &str) -> Option<String> {
    json_raw(text, key).filter(|v| *v != "null").map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_channel_lines() {
        let Some(Line::Result(c)) = parse_line("RESULT agent0-ping pass 3 packets  transmitted") else { panic!() };
        assert_eq!((c.name.as_str(), c.pass, c.detail.as_str()), ("agent0-ping", true, "3 packets transmitted"));
        let Some(Line::Result(c)) = parse_line("RESULT x fail") else { panic!() };
        assert!(!c.pass && c.detail.is_empty());
        assert!(matches!(parse_line("RESULT x maybe"), Some(Line::Malformed(_))));
        assert!(matches!(parse_line("RESULT"), Some(Line::Malformed(_))));
        let Some(Line::Expect(e)) = parse_line("EXPECT agent 2 ivshmem_work_doorbells >= 3") else { panic!() };
        assert_eq!(e, Expect { agent: 2, key: "ivshmem_work_doorbells".into(), at_least: true, value: 3 });
        assert!(matches!(parse_line("EXPECT agent x k = 1"), Some(Line::Malformed(_))));
        assert!(matches!(parse_line("EXPECT agent 1 k < 1"), Some(Line::Malformed(_))));
        assert!(matches!(parse_line("REQUEST reset-agent 3"), Some(Line::Request(AgentRequest::Reset, 3))));
        assert!(matches!(parse_line("REQUEST pause-agent 0"), Some(Line::Request(AgentRequest::Pause, 0))));
        assert!(matches!(parse_line("REQUEST resume-agent 1"), Some(Line::Request(AgentRequest::Resume, 1))));
        assert!(matches!(parse_line("REQUEST pause-agent x"), Some(Line::Malformed(_))));
        assert!(matches!(parse_line("REQUEST reboot"), Some(Line::Malformed(_))));
        assert!(matches!(parse_line("END"), Some(Line::End)));
        assert!(parse_line("BEGIN suite=net").is_none());
        assert!(parse_line("").is_none());
    }

    #[test]
    fn expectations_against_a_summary() {
        let summary = r#"{"outcome":"idle","ivshmem_work_doorbells":3,"host_end":"the host closed","slot":null}"#;
        let e = |at_least, value| Expect { agent: 0, key: "ivshmem_work_doorbells".into(), at_least, value };
        assert!(e(false, 3).check(summary).pass);
        assert!(!e(false, 4).check(summary).pass);
        assert!(e(true, 1).check(summary).pass);
        let missing = Expect { key: "nope".into(), ..e(false, 0) }.check(summary);
        assert!(!missing.pass && missing.detail.contains("no nope"));
        assert_eq!(json_str(summary, "host_end").as_deref(), Some("the host closed"));
        assert_eq!(json_str(summary, "slot"), None);
        assert_eq!(json_str(summary, "outcome").as_deref(), Some("idle"));
    }

    #[test]
    fn lines_are_read_once_and_only_when_complete() {
        let dir = std::env::temp_dir().join(format!("bpnet-xtask-lines-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("results.log");
        let mut r = LineReader::default();
        assert!(r.new_lines(&path).is_empty(), "no file yet");
        std::fs::write(&path, "RESULT a pass x\r\nRESU").unwrap();
        assert_eq!(r.new_lines(&path), ["RESULT a pass x"]);
        std::fs::write(&path, "RESULT a pass x\r\nRESULT b fail y\nEND\n").unwrap();
        assert_eq!(r.new_lines(&path), ["RESULT b fail y", "END"]);
        assert!(r.new_lines(&path).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_last_lines_count_as_the_rest() {
        let dir = std::env::temp_dir().join(format!("bpnet-xtask-channel-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("results.log");
        let mut channel = Channel::default();
        std::fs::write(&path, "BEGIN suite=net\nRESULT a pass x\nREQUEST reset-agent 0\n").unwrap();
        assert_eq!(channel.take(&path, 1, false), [(AgentRequest::Reset, 0)]);
        std::fs::write(
            &path,
            "BEGIN suite=net\nRESULT a pass x\nREQUEST reset-agent 0\nREQUEST reset-agent 1\nRESULT b\nEND\n",
        )
        .unwrap();
        assert!(channel.take(&path, 1, false).is_empty(), "agent 1 does not exist");
        let failed: Vec<&str> = channel.checks.iter().filter(|c| !c.pass).map(|c| c.name.as_str()).collect();
        assert_eq!(failed, ["guest-request", "results-channel"]);
        assert!(channel.ended);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

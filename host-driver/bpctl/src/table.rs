//! Aligned text tables: every column as wide as its widest cell, numbers right-aligned, so 20 agents
//! read as one block.

/// How a column is aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// The table as text, one line per row after the header, columns two spaces apart, no trailing
/// spaces.
pub fn render(columns: &[(&str, Align)], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = columns.iter().map(|(h, _)| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = columns.iter().map(|(h, _)| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, ((_, align), w)) in columns.iter().zip(&widths).enumerate() {
            let cell = row.get(i).map(String::as_str).unwrap_or("");
            if i > 0 {
                line.push_str("  ");
            }
            let pad = w - cell.chars().count();
            match align {
                Align::Left => {
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad));
                }
                Align::Right => {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(cell);
                }
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_numbers_go_right() {
        let rows = vec![
            vec!["bp0".to_string(), "12".to_string(), "up".to_string()],
            vec!["bp10".to_string(), "1234567".to_string(), "down".to_string()],
        ];
        let text = render(&[("AGENT", Align::Left), ("FRAMES", Align::Right), ("LINK", Align::Left)], &rows);
        assert_eq!(text, "AGENT   FRAMES  LINK\nbp0         12  up\nbp10   1234567  down\n");
    }
}

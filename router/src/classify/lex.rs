//! A small SQL tokenizer: words, quoted identifiers, punctuation, literals
//! and parameters, skipping comments and the contents of strings and dollar
//! quotes. Enough to classify raw SQL and to read the regular text SeaQuery
//! renders for writes; not a parser.

/// One token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Token<'a> {
    /// A bare word (keyword or identifier), as written.
    Word(&'a str),
    /// A double-quoted (or backquoted) identifier, without its quotes;
    /// doubled quotes inside are left doubled.
    Quoted(&'a str),
    /// One punctuation byte.
    Punct(u8),
    /// A string literal or number (content irrelevant).
    Literal,
    /// `$N`: the N-th bound value, 0-based.
    Param(usize),
    /// `?`: the next bound value (SQLite, MySQL).
    QMark,
}

impl Token<'_> {
    /// Whether this is the keyword `k` (any case).
    pub(crate) fn is(&self, k: &str) -> bool {
        matches!(self, Token::Word(w) if w.eq_ignore_ascii_case(k))
    }
}

/// Splits `sql` into tokens.
pub(crate) fn tokenize(sql: &str) -> Vec<Token<'_>> {
    tokenize_until(sql, usize::MAX)
}

/// Splits SQL into tokens; stops after `max_words` bare words.
pub(crate) fn tokenize_until(sql: &str, max_words: usize) -> Vec<Token<'_>> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut words = 0;
    let mut i = 0;
    while i < b.len() && words < max_words {
        let c = b[i];
        match c {
            _ if c.is_ascii_whitespace() => i += 1,
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                // nested block comments, as PostgreSQL allows
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'\'' => {
                let escapes = i > 0 && matches!(b[i - 1], b'E' | b'e');
                i += 1;
                while i < b.len() {
                    if escapes && b[i] == b'\\' {
                        i += 2;
                    } else if b[i] == b'\'' {
                        if b.get(i + 1) == Some(&b'\'') {
                            i += 2;
                        } else {
                            i += 1;
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                out.push(Token::Literal);
            }
            b'"' | b'`' => {
                let start = i + 1;
                i += 1;
                // a doubled quote is a quote inside the identifier
                while i < b.len() {
                    if b[i] == c {
                        if b.get(i + 1) == Some(&c) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                out.push(Token::Quoted(&sql[start..i.min(b.len())]));
                i += 1;
            }
            b'$' => {
                // $1 parameter or $tag$ .. $tag$ dollar quote
                let start = i;
                i += 1;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                let body = &sql[start + 1..i];
                if !body.is_empty() && body.bytes().all(|d| d.is_ascii_digit()) {
                    match body.parse::<usize>() {
                        Ok(n) if n > 0 => out.push(Token::Param(n - 1)),
                        _ => out.push(Token::Literal),
                    }
                    continue;
                }
                if b.get(i) == Some(&b'$') {
                    let tag = &sql[start..=i];
                    i += 1;
                    match sql[i..].find(tag) {
                        Some(end) => i += end + tag.len(),
                        None => i = b.len(),
                    }
                }
                out.push(Token::Literal);
            }
            b'?' => {
                out.push(Token::QMark);
                i += 1;
            }
            _ if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] >= 0x80)
                {
                    i += 1;
                }
                // E'..' escape strings: let the literal arm see the E
                if i - start == 1 && matches!(c, b'E' | b'e') && b.get(i) == Some(&b'\'') {
                    continue;
                }
                out.push(Token::Word(&sql[start..i]));
                words += 1;
            }
            _ if c.is_ascii_digit() => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    i += 1;
                }
                out.push(Token::Literal);
            }
            _ => {
                out.push(Token::Punct(c));
                i += 1;
            }
        }
    }
    out
}

/// An identifier's text: a bare word lowercased (as PostgreSQL folds it), a
/// quoted one as written (doubled quotes undone).
pub(crate) fn ident(t: &Token<'_>) -> Option<String> {
    match t {
        Token::Word(w) => Some(w.to_ascii_lowercase()),
        Token::Quoted(q) => Some(q.replace("\"\"", "\"").replace("``", "`")),
        _ => None,
    }
}

/// The (possibly qualified) name at `tokens[i..]`: `name`, `"name"`,
/// `schema.name`; returns the last part and the index after the name.
pub(crate) fn name_at(tokens: &[Token<'_>], mut i: usize) -> Option<(String, usize)> {
    let mut last = None;
    loop {
        let t = tokens.get(i)?;
        if matches!(t, Token::Word(_) | Token::Quoted(_)) {
            last = ident(t);
        } else {
            return last.map(|l| (l, i));
        }
        if tokens.get(i + 1) == Some(&Token::Punct(b'.')) {
            i += 2;
        } else {
            return last.map(|l| (l, i + 1));
        }
    }
}

/// The statements of `tokens`, split at top-level semicolons (empty ones
/// dropped).
pub(crate) fn statements<'t, 'a>(tokens: &'t [Token<'a>]) -> Vec<&'t [Token<'a>]> {
    tokens
        .split(|t| *t == Token::Punct(b';'))
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_quotes_and_comments() {
        let t = tokenize(
            "UPDATE \"a\"\"b\" SET x = $12 /* $3 */ WHERE y = ? -- $4\n AND z = 'it''s $5'",
        );
        assert_eq!(t[1], Token::Quoted("a\"\"b"));
        assert_eq!(ident(&t[1]).as_deref(), Some("a\"b"));
        assert!(t.contains(&Token::Param(11)));
        assert!(
            !t.contains(&Token::Param(2))
                && !t.contains(&Token::Param(3))
                && !t.contains(&Token::Param(4))
        );
        assert!(t.contains(&Token::QMark));
    }

    #[test]
    fn statements_split_at_semicolons() {
        let t = tokenize("SELECT 1; ; CREATE TABLE x (a int);");
        let s = statements(&t);
        assert_eq!(s.len(), 2);
        assert!(s[1][0].is("create"));
        let t = tokenize("SELECT ';'");
        assert_eq!(statements(&t).len(), 1);
    }
}

//! Trends formulas (`A/B*100`, `(A+B)/2`): series by letter, numbers,
//! `+ - * /`, parentheses and unary minus. A division by zero gives 0, as
//! a chart of ratios expects.

use crate::QueryError;

/// Bounds the parser's recursion, so no formula can exhaust the stack.
const MAX_FORMULA_BYTES: usize = 500;
const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Number(f64),
    Series(usize),
    Negate(Box<Node>),
    Binary(char, Box<Node>, Box<Node>),
}

#[derive(Debug, Clone)]
pub(crate) struct Formula {
    text: String,
    root: Node,
}

impl Formula {
    pub fn parse(text: &str, series: usize) -> Result<Self, QueryError> {
        if text.len() > MAX_FORMULA_BYTES {
            return Err(QueryError::invalid(format!("formula longer than {MAX_FORMULA_BYTES} characters")));
        }
        let tokens: Vec<char> = text.chars().filter(|c| !c.is_whitespace()).collect();
        let mut parser = Parser { tokens: &tokens, at: 0, series, depth: 0 };
        let root = parser.sum()?;
        if parser.at != tokens.len() {
            return Err(QueryError::invalid(format!("formula {text:?}: unexpected {:?}", tokens[parser.at])));
        }
        Ok(Self { text: text.trim().to_string(), root })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The formula's value with series `A` = `inputs[0]`, `B` = `inputs[1]`…
    pub fn evaluate(&self, inputs: &[f64]) -> f64 {
        let value = eval(&self.root, inputs);
        if value.is_finite() {
            value
        } else {
            0.0
        }
    }
}

fn eval(node: &Node, inputs: &[f64]) -> f64 {
    match node {
        Node::Number(n) => *n,
        Node::Series(i) => inputs.get(*i).copied().unwrap_or(0.0),
        Node::Negate(inner) => -eval(inner, inputs),
        Node::Binary(op, left, right) => {
            let (l, r) = (eval(left, inputs), eval(right, inputs));
            match op {
                '+' => l + r,
                '-' => l - r,
                '*' => l * r,
                _ if r == 0.0 => 0.0,
                _ => l / r,
            }
        }
    }
}

struct Parser<'a> {
    tokens: &'a [char],
    at: usize,
    series: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.tokens.get(self.at).copied()
    }

    fn sum(&mut self) -> Result<Node, QueryError> {
        let mut node = self.product()?;
        while let Some(op @ ('+' | '-')) = self.peek() {
            self.at += 1;
            node = Node::Binary(op, Box::new(node), Box::new(self.product()?));
        }
        Ok(node)
    }

    fn product(&mut self) -> Result<Node, QueryError> {
        let mut node = self.unary()?;
        while let Some(op @ ('*' | '/')) = self.peek() {
            self.at += 1;
            node = Node::Binary(op, Box::new(node), Box::new(self.unary()?));
        }
        Ok(node)
    }

    fn unary(&mut self) -> Result<Node, QueryError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(QueryError::invalid(format!("formula nests deeper than {MAX_DEPTH}")));
        }
        let node = if self.peek() == Some('-') {
            self.at += 1;
            Node::Negate(Box::new(self.unary()?))
        } else {
            self.atom()?
        };
        self.depth -= 1;
        Ok(node)
    }

    fn atom(&mut self) -> Result<Node, QueryError> {
        match self.peek() {
            Some('(') => {
                self.at += 1;
                let node = self.sum()?;
                if self.peek() != Some(')') {
                    return Err(QueryError::invalid("formula: missing closing parenthesis"));
                }
                self.at += 1;
                Ok(node)
            }
            Some(c) if c.is_ascii_alphabetic() => {
                self.at += 1;
                let index = (c.to_ascii_uppercase() as u8 - b'A') as usize;
                if index >= self.series {
                    return Err(QueryError::invalid(format!(
                        "formula names series {c} but there are only {}",
                        self.series
                    )));
                }
                Ok(Node::Series(index))
            }
            Some(c) if c.is_ascii_digit() || c == '.' => {
                let start = self.at;
                while self.peek().is_some_and(|c| c.is_ascii_digit() || c == '.') {
                    self.at += 1;
                }
                let text: String = self.tokens[start..self.at].iter().collect();
                text.parse()
                    .map(Node::Number)
                    .map_err(|_| QueryError::invalid(format!("formula: bad number {text:?}")))
            }
            Some(c) => Err(QueryError::invalid(format!("formula: unexpected {c:?}"))),
            None => Err(QueryError::invalid("formula ends too early")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_follow_precedence_and_guard_division() {
        let f = |text: &str, inputs: &[f64]| Formula::parse(text, inputs.len()).map(|f| f.evaluate(inputs));
        assert_eq!(f("A/B*100", &[1.0, 4.0]).ok(), Some(25.0));
        assert_eq!(f("(A+B)/2", &[1.0, 4.0]).ok(), Some(2.5));
        assert_eq!(f("-A+b", &[1.0, 4.0]).ok(), Some(3.0));
        assert_eq!(f("A/B", &[1.0, 0.0]).ok(), Some(0.0));
        assert!(f("A+C", &[1.0, 2.0]).is_err());
        assert!(f("A+", &[1.0]).is_err());
        assert!(f("(A", &[1.0]).is_err());
        assert!(f(&"(".repeat(100_000), &[1.0]).is_err());
        assert!(f(&format!("{}A", "-".repeat(200)), &[1.0]).is_err());
    }
}

//! The backend-neutral plan: a small relational tree (selects over the
//! events table, subqueries and joins) with expressions that name *what*
//! is wanted — an event property as text, the start of a day in the
//! project's time zone, a person's id after merges, a funnel over a
//! person's events — and never *how* an engine spells it. A renderer per
//! dialect (`render::datafusion`, `render::clickhouse`) turns it into SQL.

use serde::Serialize;

use crate::model::Interval;

/// A column of the events table (persons on events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Uuid,
    Event,
    Timestamp,
    TeamId,
    DistinctId,
    /// The person after merges: the stored id, replaced through the
    /// person-id overrides when that person was merged into another.
    PersonId,
    PersonCreatedAt,
    PersonMode,
    SessionId,
    WindowId,
    ElementsChain,
    /// `$group_0` … `$group_4`.
    Group(u8),
    /// The event's properties as JSON text.
    Properties,
    /// The person's properties stored on the event, as JSON text.
    PersonProperties,
}

/// Whose properties a property expression reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropertySource {
    Event,
    /// The person's properties as stored on the event (persons on events).
    Person,
    /// The `properties` of a row of [`Source::Groups`].
    Group,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    /// A UTC instant, µs since the epoch.
    Timestamp(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    And,
    Or,
    Add,
    Sub,
    Mul,
    Div,
}

/// How a bucket is placed in time: the interval and the project's zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucketing {
    pub interval: Interval,
    /// IANA zone name, already validated.
    pub time_zone: String,
    /// Weeks start on Sunday (PostHog's default) or Monday.
    pub week_starts_monday: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Column(Column),
    /// A property as text: strings as they are, numbers and booleans in
    /// their JSON spelling, null when missing or JSON null.
    Property {
        source: PropertySource,
        key: String,
    },
    /// A property as a float; null when missing or not a number.
    NumericProperty {
        source: PropertySource,
        key: String,
    },
    Literal(Literal),
    /// An output column of the subquery or join side named `table`.
    Ref {
        table: Option<String>,
        column: String,
    },
    Not(Box<Expr>),
    IsNull(Box<Expr>),
    IsNotNull(Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    InList {
        expr: Box<Expr>,
        list: Vec<Literal>,
        negated: bool,
    },
    /// `expr IN (SELECT <one column> …)`.
    InSelect {
        expr: Box<Expr>,
        select: Box<Select>,
    },
    /// Case-insensitive substring test.
    Contains {
        expr: Box<Expr>,
        needle: String,
        negated: bool,
    },
    RegexMatch {
        expr: Box<Expr>,
        pattern: String,
        negated: bool,
    },
    /// The local start of the bucket a UTC instant falls in, as a local
    /// (zone-less) timestamp.
    Bucket {
        bucketing: Bucketing,
        expr: Box<Expr>,
    },
    /// A local bucket start moved by `n` intervals.
    ShiftBucket {
        interval: Interval,
        n: i32,
        expr: Box<Expr>,
    },
    /// First argument that is not null.
    Coalesce(Vec<Expr>),
    /// `CASE WHEN c1 THEN v1 … ELSE e END`.
    Case {
        branches: Vec<(Expr, Expr)>,
        otherwise: Box<Expr>,
    },
    Aggregate(Aggregate),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Aggregate {
    CountAll,
    Count(Box<Expr>),
    CountDistinct(Box<Expr>),
    Sum(Box<Expr>),
    Avg(Box<Expr>),
    Min(Box<Expr>),
    Max(Box<Expr>),
    /// Exact quantile with linear interpolation, `q` in 0..=1.
    Quantile(f64, Box<Expr>),
    /// The funnel a group's (person's) events make; see [`FunnelSpec`].
    Funnel {
        spec: FunnelSpec,
        timestamp: Box<Expr>,
        steps: Box<Expr>,
        breakdown: Box<Expr>,
    },
}

/// How a person's events become a funnel. `steps` is a bit mask per event:
/// bit `i` when it matches step `i`, bit `32 + j` when it matches
/// exclusion `j`. The result is the chosen path: the UTC timestamps (µs) of
/// the steps reached in order, and the breakdown value attributed to it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct FunnelSpec {
    pub steps: usize,
    pub window_us: i64,
    pub order: FunnelOrder,
    /// `(from_step, to_step)` per exclusion.
    pub exclusions: Vec<(usize, usize)>,
    pub attribution: Attribution,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FunnelOrder {
    Ordered,
    Strict,
    Unordered,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Attribution {
    FirstTouch,
    LastTouch,
    /// Breakdown values are grouping keys: each value is its own funnel.
    AllEvents,
    Step(usize),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// The project's events (the renderer scopes them to the project).
    Events,
    /// The project's groups: `group_type_index`, `group_key`, properties.
    Groups,
    Subquery {
        select: Box<Select>,
        alias: String,
    },
    Join {
        left: Box<Source>,
        right: Box<Source>,
        kind: JoinKind,
        on: Expr,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    Inner,
    Left,
    Full,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Select {
    pub distinct: bool,
    pub columns: Vec<(String, Expr)>,
    pub from: Source,
    pub filter: Option<Expr>,
    pub group_by: Vec<Expr>,
    pub order_by: Vec<(Expr, bool)>,
    pub limit: Option<u64>,
}

impl Select {
    pub fn from(from: Source) -> Self {
        Self {
            distinct: false,
            columns: Vec::new(),
            from,
            filter: None,
            group_by: Vec::new(),
            order_by: Vec::new(),
            limit: None,
        }
    }

    pub fn column(mut self, name: &str, expr: Expr) -> Self {
        self.columns.push((name.to_string(), expr));
        self
    }

    pub fn filter(mut self, expr: Expr) -> Self {
        self.filter = Some(match self.filter.take() {
            Some(existing) => existing.and(expr),
            None => expr,
        });
        self
    }

    pub fn group_by(mut self, expr: Expr) -> Self {
        self.group_by.push(expr);
        self
    }

    pub fn order_by(mut self, expr: Expr, ascending: bool) -> Self {
        self.order_by.push((expr, ascending));
        self
    }

    pub fn limit(mut self, limit: u64) -> Self {
        self.limit = Some(limit);
        self
    }

    pub fn distinct(mut self) -> Self {
        self.distinct = true;
        self
    }

    /// Whether this reads a bounded list of events, row by row: no
    /// grouping, no aggregate, a limit. Such a plan keeps few of the rows
    /// it filters, so an engine does better testing the filter before it
    /// decodes the wide columns (the properties) than after.
    pub fn lists_events(&self) -> bool {
        matches!(self.from, Source::Events)
            && self.limit.is_some()
            && self.group_by.is_empty()
            && !self.distinct
            && !self.columns.iter().any(|(_, expr)| matches!(expr, Expr::Aggregate(_)))
    }

    pub fn into_source(self, alias: &str) -> Source {
        Source::Subquery { select: Box::new(self), alias: alias.to_string() }
    }
}

impl Expr {
    pub fn col(column: Column) -> Self {
        Expr::Column(column)
    }

    pub fn reference(table: &str, column: &str) -> Self {
        Expr::Ref { table: Some(table.to_string()), column: column.to_string() }
    }

    pub fn name(column: &str) -> Self {
        Expr::Ref { table: None, column: column.to_string() }
    }

    pub fn text(value: impl Into<String>) -> Self {
        Expr::Literal(Literal::Text(value.into()))
    }

    pub fn int(value: i64) -> Self {
        Expr::Literal(Literal::Int(value))
    }

    pub fn timestamp(us: i64) -> Self {
        Expr::Literal(Literal::Timestamp(us))
    }

    pub fn binary(self, op: BinaryOp, other: Expr) -> Self {
        Expr::Binary(op, Box::new(self), Box::new(other))
    }

    pub fn and(self, other: Expr) -> Self {
        self.binary(BinaryOp::And, other)
    }

    pub fn or(self, other: Expr) -> Self {
        self.binary(BinaryOp::Or, other)
    }

    pub fn eq(self, other: Expr) -> Self {
        self.binary(BinaryOp::Eq, other)
    }

    pub fn aggregate(aggregate: Aggregate) -> Self {
        Expr::Aggregate(aggregate)
    }

    /// All of `exprs`; true when empty.
    pub fn all(exprs: impl IntoIterator<Item = Expr>) -> Self {
        exprs.into_iter().reduce(Expr::and).unwrap_or(Expr::Literal(Literal::Bool(true)))
    }

    /// Any of `exprs`; false when empty.
    pub fn any(exprs: impl IntoIterator<Item = Expr>) -> Self {
        exprs.into_iter().reduce(Expr::or).unwrap_or(Expr::Literal(Literal::Bool(false)))
    }
}

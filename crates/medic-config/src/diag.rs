//! Problems found in an input file, each with its location, what is wrong and what to do.
//!
//! Loaders never stop at the first problem: they collect [`Problem`]s and return them all in
//! a [`Problems`] value, which renders as one miette report per problem at the CLI.

use std::fmt;
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, SourceCode};

use crate::yaml::Loc;

/// One input file's name and text, shared by all its problems.
#[derive(Clone, Debug)]
pub struct SourceFile {
    pub name: Arc<str>,
    pub text: Arc<String>,
}

impl SourceFile {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        SourceFile {
            name: Arc::from(name.into()),
            text: Arc::new(text.into()),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Problem {
    pub file: SourceFile,
    pub loc: Option<Loc>,
    pub message: String,
    pub help: Option<String>,
    /// A stable code such as `medic::inventory::duplicate_host`.
    pub code: &'static str,
}

impl Problem {
    pub fn new(
        file: &SourceFile,
        loc: Option<Loc>,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Problem {
            file: file.clone(),
            loc,
            message: message.into(),
            help: None,
            code,
        }
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// `inventory.yaml:12:5` (or just the file name when the location is unknown).
    pub fn position(&self) -> String {
        match self.loc {
            Some(l) if l.line > 0 => format!("{}:{}:{}", self.file.name, l.line, l.col),
            _ => self.file.name.to_string(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.position(), self.message)
    }
}

impl std::error::Error for Problem {}

impl Diagnostic for Problem {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.code))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.loc.map(|_| self as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let l = self.loc?;
        if l.line == 0 {
            return None;
        }
        let len = l
            .len
            .max(1)
            .min(self.file.text.len().saturating_sub(l.offset).max(1));
        Some(Box::new(std::iter::once(LabeledSpan::new(
            Some("here".to_owned()),
            l.offset,
            len,
        ))))
    }
}

impl SourceCode for Problem {
    fn read_span<'a>(
        &'a self,
        span: &miette::SourceSpan,
        before: usize,
        after: usize,
    ) -> Result<Box<dyn miette::SpanContents<'a> + 'a>, miette::MietteError> {
        let text: &'a str = self.file.text.as_str();
        let contents = text.read_span(span, before, after)?;
        Ok(Box::new(miette::MietteSpanContents::new_named(
            self.file.name.to_string(),
            contents.data(),
            *contents.span(),
            contents.line(),
            contents.column(),
            contents.line_count(),
        )))
    }
}

/// Every problem found, in file order.
#[derive(Clone, Debug, Default)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn push(&mut self, p: Problem) {
        self.0.push(p);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn extend(&mut self, other: Problems) {
        self.0.extend(other.0);
    }

    /// Orders problems by file, then position, so reports are stable.
    pub fn sorted(mut self) -> Self {
        self.0.sort_by(|a, b| {
            let ka = (a.file.name.clone(), a.loc.map(|l| (l.line, l.col)));
            let kb = (b.file.name.clone(), b.loc.map(|l| (l.line, l.col)));
            ka.cmp(&kb)
        });
        self
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.0 {
            writeln!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

//! The families of the exposition: pgdog's own (name, HELP, TYPE, source, and how their
//! samples are written from a [`View`]; they are in [`super::pools`], [`super::mirror`]
//! and [`super::histogram`]) and the plugins' ([`super::points`]).

use super::points::PluginFamily;
use super::scrape::{Named, Source, View};
use super::text::{Kind, Writer};

/// One of pgdog's families.
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    /// What its samples are written from.
    pub source: Source,
    /// Writes the samples (the header is written around them, and dropped when there
    /// are none).
    pub samples: fn(&Family, &mut Writer, &View<'_>),
}

impl Family {
    /// `name{database="<db>"} value` for each item.
    pub fn per_database<T>(&self, w: &mut Writer, items: &[Named<'_, T>], f: impl Fn(&T) -> f64) {
        self.per_database_with(w, "", "", items, f);
    }

    /// `name{<before>database="<db>"<after>} value` for each item: `before` and `after`
    /// are label text, e.g. `category="query",` or `,state="idle"`.
    pub fn per_database_with<T>(
        &self,
        w: &mut Writer,
        before: &str,
        after: &str,
        items: &[Named<'_, T>],
        f: impl Fn(&T) -> f64,
    ) {
        let head = format!("{}{{{before}database=\"", self.name);
        let tail = format!("\"{after}}}");
        for n in items {
            w.line(&head, &n.label, &tail, f(n.item));
        }
    }
}

/// One family of the exposition.
pub enum Entry {
    Own(&'static Family),
    Plugin(PluginFamily),
}

impl Entry {
    pub fn name(&self) -> &str {
        match self {
            Entry::Own(f) => f.name,
            Entry::Plugin(f) => &f.name,
        }
    }

    pub fn source(&self) -> Source {
        match self {
            Entry::Own(f) => f.source,
            Entry::Plugin(_) => Source::Points,
        }
    }

    /// The whole family: HELP, TYPE and samples; nothing when it has no samples.
    pub fn write(&self, w: &mut Writer, view: &View<'_>) {
        match self {
            Entry::Own(f) => {
                w.begin_family(f.name, f.help, f.kind);
                (f.samples)(f, w, view);
            }
            Entry::Plugin(f) => {
                w.begin_family(&f.name, &f.help, f.kind);
                f.samples(w, view.points, view.spec.as_ref());
            }
        }
        w.end_family();
    }
}

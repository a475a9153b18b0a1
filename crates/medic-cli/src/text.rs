//! Text for people: commands printed for copying (the quoting lives in `medic-run`, which
//! words the commands of `medic status` and of a run's end).

pub(crate) use medic_run::text::shell_word;

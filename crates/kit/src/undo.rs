//! The undo stack of an ADD: every step that creates something registers
//! how to remove it; unless the ADD commits, the steps run in reverse when
//! the stack drops (also on `?` and on panic). A step returns its result;
//! a failed step is logged through the one logger (`RCNI_LOG`,
//! `RCNI_LOG_FILE`) and the others still run: the ADD's own error is what
//! the runtime sees.

use crate::error::Error;

/// What an undo step may return: nothing, or a result whose failure is
/// logged.
pub trait StepOutcome {
    /// The failure, if the step failed.
    fn into_failure(self) -> Option<Error>;
}

impl StepOutcome for () {
    fn into_failure(self) -> Option<Error> {
        None
    }
}

impl<T, E: Into<Error>> StepOutcome for std::result::Result<T, E> {
    fn into_failure(self) -> Option<Error> {
        self.err().map(Into::into)
    }
}

type Step<'a> = Box<dyn FnOnce() -> Option<Error> + 'a>;

/// The steps that take back what an ADD made so far: run newest first
/// when the stack is dropped (an ADD that returned early with an error),
/// forgotten by [`Undo::commit`] once the ADD succeeded.
pub struct Undo<'a> {
    steps: Vec<(String, Step<'a>)>,
}

impl<'a> Default for Undo<'a> {
    fn default() -> Self {
        Undo::new()
    }
}

impl<'a> Undo<'a> {
    /// An empty stack.
    pub fn new() -> Undo<'a> {
        Undo { steps: Vec::new() }
    }

    /// Registers `f` (named for the log) to run if the ADD fails.
    pub fn push<R: StepOutcome>(&mut self, what: impl Into<String>, f: impl FnOnce() -> R + 'a) {
        self.steps
            .push((what.into(), Box::new(move || f().into_failure())));
    }

    /// The ADD succeeded: forget every step.
    pub fn commit(mut self) {
        self.steps.clear();
    }

    /// Runs every step now, newest first; returns the failures (each also
    /// logged).
    pub fn run(&mut self) -> Vec<Error> {
        let mut failed = Vec::new();
        while let Some((what, f)) = self.steps.pop() {
            cni_skel::log::debug(&format!("undo: {what}"));
            if let Some(e) = f() {
                cni_skel::log::warn(&format!("undo: {what} failed: {e}"));
                failed.push(e.context(what));
            }
        }
        failed
    }
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        self.run();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn reverse_order_unless_committed() {
        let log = RefCell::new(Vec::new());
        {
            let mut u = Undo::new();
            u.push("a", || log.borrow_mut().push(1));
            u.push("b", || log.borrow_mut().push(2));
        }
        assert_eq!(*log.borrow(), vec![2, 1]);
        log.borrow_mut().clear();
        let mut u = Undo::new();
        u.push("a", || log.borrow_mut().push(1));
        u.commit();
        assert!(log.borrow().is_empty());
    }

    #[test]
    fn failed_steps_are_reported_and_the_rest_still_run() {
        let ran = RefCell::new(Vec::new());
        let mut u = Undo::new();
        u.push("first", || {
            ran.borrow_mut().push("first");
            Ok::<(), Error>(())
        });
        u.push("second", || {
            ran.borrow_mut().push("second");
            Err::<(), _>(Error::Missing("link gone".into()))
        });
        let failed = u.run();
        assert_eq!(*ran.borrow(), vec!["second", "first"]);
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].to_string(), "second: link gone");
        assert_eq!(failed[0].code(), 999);
    }
}

//! The undo stack of an ADD: every step that creates something registers
//! how to remove it; unless the ADD commits, the steps run in reverse when
//! the stack drops (also on `?` and on panic).

pub struct Undo<'a> {
    steps: Vec<(String, Box<dyn FnOnce() + 'a>)>,
}

impl<'a> Default for Undo<'a> {
    fn default() -> Self {
        Undo::new()
    }
}

impl<'a> Undo<'a> {
    pub fn new() -> Undo<'a> {
        Undo { steps: Vec::new() }
    }

    /// Registers `f` (named for the log) to run if the ADD fails.
    pub fn push(&mut self, what: impl Into<String>, f: impl FnOnce() + 'a) {
        self.steps.push((what.into(), Box::new(f)));
    }

    /// The ADD succeeded: forget every step.
    pub fn commit(mut self) {
        self.steps.clear();
    }

    /// Runs every step now, newest first.
    pub fn run(&mut self) {
        while let Some((what, f)) = self.steps.pop() {
            if std::env::var_os("RCNI_DEBUG").is_some() {
                eprintln!("rcni: undo: {what}");
            }
            f();
        }
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
}

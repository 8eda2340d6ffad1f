//! The live views' share of a run: the fixed-noise grid (and the class grid beside it) is due
//! every `sample_every` steps and at each epoch's end, but drawn only while the views' time so
//! far stays within [`VIEW_BUDGET`] of the training time. A VAE's grid is one decoder pass and
//! always fits; a diffusion model's is its whole sampler (a hundred U-Net passes per image),
//! which drawn every 50 steps took about a quarter of the run.

use crate::engine::protocol::VIEW_BUDGET;

/// What a run has spent on its views (the grids, and trajectories drawn to follow them).
#[derive(Debug, Default)]
pub(super) struct ViewBudget {
    /// Wall time of every view drawn in this run.
    spent: f64,
    /// The last grid's wall time: what the next one is expected to cost.
    last_grid: Option<f64>,
}

impl ViewBudget {
    /// Whether a grid that is due fits: the first always does (its cost is not known yet),
    /// and so does the run's last (its end state is the one a user looks at).
    pub(super) fn grid_fits(&self, train_seconds: f64, last_step: bool) -> bool {
        match self.last_grid {
            None => true,
            Some(_) if last_step => true,
            Some(cost) => self.spent + cost <= VIEW_BUDGET * train_seconds,
        }
    }

    /// A grid drawn in `seconds`; `during_training` counts it against the budget (the grids
    /// drawn at a start or a rewind are the user's wait, not the run's).
    pub(super) fn grid_drawn(&mut self, seconds: f64, during_training: bool) {
        if during_training {
            self.spent += seconds;
        }
        self.last_grid = Some(seconds);
    }

    /// Another view drawn for this run's training (a trajectory following the grid).
    pub(super) fn view_drawn(&mut self, seconds: f64) {
        self.spent += seconds;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Grids due every 50 steps of 0.36 s each: a cheap grid is drawn every time, one that costs
    /// 5 s only every ~140 steps, and the views' share stays within the budget.
    #[test]
    fn an_expensive_grid_is_drawn_less_often_and_keeps_to_the_budget() {
        for (cost, want_every) in [(0.01, 50), (5.0, 150)] {
            let mut b = ViewBudget::default();
            let (mut train, mut drawn) = (0.0, Vec::new());
            for step in 1..=1260u64 {
                train += 0.36;
                if step % 50 == 0 && b.grid_fits(train, step == 1260) {
                    b.grid_drawn(cost, true);
                    drawn.push(step);
                }
            }
            assert_eq!(drawn[0], 50, "the first due grid is drawn");
            let gaps: Vec<u64> = drawn.windows(2).map(|w| w[1] - w[0]).collect();
            let typical = gaps[gaps.len() / 2];
            assert_eq!(typical, want_every, "cost {cost}: grids at {drawn:?}");
            let share = b.spent / (train + b.spent);
            assert!(share <= VIEW_BUDGET + 0.01, "cost {cost}: views took {share:.3} of the run");
        }
    }

    #[test]
    fn a_grid_at_the_start_sets_the_cost_but_not_the_spending() {
        let mut b = ViewBudget::default();
        b.grid_drawn(5.0, false);
        assert!(!b.grid_fits(18.0, false), "5 s is over 10% of 18 s of training");
        assert!(b.grid_fits(50.0, false));
    }

    #[test]
    fn the_last_step_always_gets_its_grid() {
        let mut b = ViewBudget::default();
        b.grid_drawn(100.0, true);
        assert!(!b.grid_fits(10.0, false));
        assert!(b.grid_fits(10.0, true));
    }

    #[test]
    fn a_trajectory_counts_against_the_grids() {
        let mut b = ViewBudget::default();
        b.grid_drawn(1.0, true);
        assert!(b.grid_fits(20.0, false));
        b.view_drawn(1.5);
        assert!(!b.grid_fits(20.0, false), "2.5 s of views plus a 1 s grid is over 10% of 20 s");
    }
}

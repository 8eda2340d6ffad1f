//! The Latent space tab's exports: the traversal and interpolation as PNG grids and GIFs.

use super::*;

impl LatentTab {
    /// Saves the traversal shown as an animated GIF (one frame per value, every dimension side
    /// by side, as `genlab traverse` does) or the test set's encoding as CSV.
    pub(super) fn export_ui(&mut self, ui: &mut egui::Ui, run: &RunRecord) {
        ui.add_space(6.0);
        ui.strong("Export");
        self.export.path_ui(ui, "traversal.gif", "Overwrite an existing file");
        let busy = self.export.is_busy();
        // The traversal decoded for the current encoding (rows × values), if it has arrived.
        let rows = self.derived.as_ref().map_or(0, |d| d.rows);
        let traversal = run
            .explore
            .decoded
            .get(&TRAVERSAL)
            .map(|t| &t.value.1)
            .filter(|t| rows > 0 && t.len() == rows * TRAVERSAL_COLS);
        ui.horizontal(|ui| {
            let gif = ui
                .add_enabled(!busy && traversal.is_some(), egui::Button::new("Save traversal GIF"))
                .on_hover_text("One frame per value from −3 to 3; the traversal's dimensions side by side");
            if let (true, Some(t), Some(d)) = (gif.clicked(), traversal, &self.derived) {
                let frames = export::traversal_frames(t, rows, TRAVERSAL_COLS);
                let dims = d.dims.clone();
                self.start_export(ui.ctx(), move |path| {
                    export::save_gif(path, &frames, dims.len(), GIF_FRAME_MS).map_err(|e| e.to_string())?;
                    Ok(format!("Saved {} ({} frames, dimensions {dims:?})", path.display(), frames.len()))
                });
            }
            let csv = ui
                .add_enabled(!busy && run.explore.encoded.is_some(), egui::Button::new("Save encoding CSV"))
                .on_hover_text("index, label, μ and log σ² of every test image");
            if let (true, Some(enc)) = (csv.clicked(), &run.explore.encoded) {
                let enc = enc.value.clone();
                self.start_export(ui.ctx(), move |path| {
                    export::save_encoding_csv(path, &enc).map_err(|e| e.to_string())?;
                    Ok(format!(
                        "Saved {} ({} images, {} dimensions)",
                        path.display(),
                        enc.indices.len(),
                        enc.dim
                    ))
                });
            }
        });
        self.export.message_ui(ui);
    }

    pub(super) fn start_export(
        &mut self,
        ctx: &egui::Context,
        write: impl FnOnce(&std::path::Path) -> Result<String, String> + Send + 'static,
    ) {
        let Some(path) = self.export.target() else { return };
        if let Err(e) = export::check_target(&path, self.export.overwrite) {
            self.export.message = Some(Err(e.to_string()));
            return;
        }
        self.export.start(ctx, path, write);
    }
}

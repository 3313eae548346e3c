//! The camera / microphone / speaker pickers shared by the lobby, the call toolbar and the
//! settings window: the devices found, the built-in test sources, and "none".

use egui::Ui;

use crate::devices::DeviceCatalog;
use crate::settings::DeviceChoice;

use super::app::UiAction;
use super::jobs::DeviceSlot;

/// The visible name of a choice in `slot`.
pub fn choice_label(slot: DeviceSlot, choice: &DeviceChoice) -> String {
    match (slot, choice) {
        (_, DeviceChoice::Auto) => "Automatic".to_owned(),
        (_, DeviceChoice::Device(name)) => name.clone(),
        (DeviceSlot::Camera, DeviceChoice::TestSource) => "Test pattern".to_owned(),
        (DeviceSlot::Microphone, DeviceChoice::TestSource) => "Test tone".to_owned(),
        (DeviceSlot::Speaker, DeviceChoice::TestSource) => "Automatic".to_owned(),
        (DeviceSlot::Camera, DeviceChoice::Off) => "No camera".to_owned(),
        (DeviceSlot::Microphone, DeviceChoice::Off) => "No microphone".to_owned(),
        (DeviceSlot::Speaker, DeviceChoice::Off) => "Don't play sound".to_owned(),
    }
}

/// What a slot is called.
pub fn slot_name(slot: DeviceSlot) -> &'static str {
    match slot {
        DeviceSlot::Camera => "Camera",
        DeviceSlot::Microphone => "Microphone",
        DeviceSlot::Speaker => "Speaker",
    }
}

/// Every choice offered for `slot`.
pub fn options(slot: DeviceSlot, catalog: Option<&DeviceCatalog>) -> Vec<DeviceChoice> {
    let mut choices = vec![DeviceChoice::Auto];
    if let Some(catalog) = catalog {
        let names: Vec<String> = match slot {
            DeviceSlot::Camera => catalog.cameras.iter().map(|c| c.name.clone()).collect(),
            DeviceSlot::Microphone => catalog.microphones.clone(),
            DeviceSlot::Speaker => catalog.speakers.clone(),
        };
        choices.extend(names.into_iter().map(DeviceChoice::Device));
    }
    if slot != DeviceSlot::Speaker {
        choices.push(DeviceChoice::TestSource);
    }
    choices.push(DeviceChoice::Off);
    choices
}

/// A combo box for `slot`; picking something pushes a `ChooseDevice` action.
pub fn device_picker(
    ui: &mut Ui,
    slot: DeviceSlot,
    current: &DeviceChoice,
    catalog: Option<&DeviceCatalog>,
    actions: &mut Vec<UiAction>,
) {
    let id = format!("device-picker-{}", slot_name(slot));
    let combo = egui::ComboBox::from_id_salt(id)
        .width(220.0)
        .selected_text(choice_label(slot, current))
        .show_ui(ui, |ui| {
            for choice in options(slot, catalog) {
                let selected = &choice == current;
                if ui
                    .selectable_label(selected, choice_label(slot, &choice))
                    .clicked()
                    && !selected
                {
                    actions.push(UiAction::ChooseDevice(slot, choice));
                }
            }
        });
    super::widgets::set_label(&combo.response, egui::Role::ComboBox, slot_name(slot));
    if catalog.is_none() {
        ui.spinner().on_hover_text("Looking for devices…");
    }
}

/// The choices of `slot` as a list of selectable entries (for a menu); picking one pushes a
/// `ChooseDevice` action.
pub fn device_list(
    ui: &mut Ui,
    slot: DeviceSlot,
    current: &DeviceChoice,
    catalog: Option<&DeviceCatalog>,
    actions: &mut Vec<UiAction>,
) {
    for choice in options(slot, catalog) {
        let selected = &choice == current;
        if ui
            .selectable_label(selected, choice_label(slot, &choice))
            .clicked()
            && !selected
        {
            actions.push(UiAction::ChooseDevice(slot, choice));
        }
    }
    if catalog.is_none() {
        ui.label("Looking for devices…");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::camera::CameraDevice;

    #[test]
    fn options_list_devices_then_fallbacks() {
        let catalog = DeviceCatalog {
            cameras: vec![CameraDevice {
                name: "Webcam".into(),
                index: 0,
            }],
            microphones: vec![],
            speakers: vec!["Speakers".into()],
        };
        let cameras = options(DeviceSlot::Camera, Some(&catalog));
        assert_eq!(
            cameras,
            [
                DeviceChoice::Auto,
                DeviceChoice::Device("Webcam".into()),
                DeviceChoice::TestSource,
                DeviceChoice::Off
            ]
        );
        let speakers = options(DeviceSlot::Speaker, Some(&catalog));
        assert!(!speakers.contains(&DeviceChoice::TestSource));
        assert_eq!(
            choice_label(DeviceSlot::Microphone, &DeviceChoice::TestSource),
            "Test tone"
        );
    }
}

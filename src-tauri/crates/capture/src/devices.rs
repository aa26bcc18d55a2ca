//! Audio input devices as the user sees them.

use cpal::traits::{DeviceTrait, HostTrait};
use serde::Serialize;

use crate::{Error, Result};

/// An audio input the user could record from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InputDevice {
    /// The name the operating system gives the device.
    pub name: String,
    /// Whether recording without choosing a device would use this one.
    pub is_default: bool,
    /// Channels of the device's default input configuration.
    pub channels: u16,
    /// Sample rate (Hz) of the device's default input configuration, the
    /// one recording uses.
    pub sample_rate: u32,
    /// The common sample rates (Hz) the device can also deliver.
    pub sample_rates: Vec<u32>,
}

/// Rates worth naming; devices offer ranges, often from 1 Hz up.
const COMMON_RATES: [u32; 7] = [8_000, 16_000, 22_050, 32_000, 44_100, 48_000, 96_000];

fn describe(device: &cpal::Device, is_default: bool) -> Result<InputDevice> {
    // `supports_input()` can wrongly say no on ALSA; asking for the default
    // input configuration is the test that matches what recording will do.
    let config =
        device.default_input_config().map_err(|err| Error::NoMicrophone { reason: err.to_string() })?;
    let name = device
        .description()
        .map(|description| description.name().to_owned())
        .unwrap_or_else(|_| "unnamed input".to_owned());
    let mut sample_rates: Vec<u32> = device
        .supported_input_configs()
        .map(|ranges| {
            let ranges: Vec<_> = ranges.collect();
            COMMON_RATES
                .into_iter()
                .filter(|rate| {
                    ranges
                        .iter()
                        .any(|range| (range.min_sample_rate()..=range.max_sample_rate()).contains(rate))
                })
                .collect()
        })
        .unwrap_or_default();
    if !sample_rates.contains(&config.sample_rate()) {
        sample_rates.push(config.sample_rate());
        sample_rates.sort_unstable();
    }
    Ok(InputDevice {
        name,
        is_default,
        channels: config.channels(),
        sample_rate: config.sample_rate(),
        sample_rates,
    })
}

/// The input recording uses when the user has not picked one.
///
/// Fails with [`Error::NoMicrophone`] when there is none, or when the one the
/// system names cannot be opened (e.g. the sound server is not running).
pub fn default_input() -> Result<InputDevice> {
    let host = cpal::default_host();
    let device = host.default_input_device().ok_or_else(|| Error::NoMicrophone {
        reason: format!("the {} audio system has no default input", host.id().name()),
    })?;
    describe(&device, true)
}

/// Every input that can be opened, the default first.
///
/// Devices that the system lists but that refuse to give an input
/// configuration are left out: the user could not record from them.
pub fn input_devices() -> Result<Vec<InputDevice>> {
    let host = cpal::default_host();
    let mut found = Vec::new();
    if let Ok(default) = default_input() {
        found.push(default);
    }
    let devices = host.input_devices().map_err(|err| Error::Backend(err.to_string()))?;
    for device in devices {
        if let Ok(input) = describe(&device, false)
            && !found.iter().any(|known| known.name == input.name)
        {
            found.push(input);
        }
    }
    Ok(found)
}

/// The cpal device named `name` (as [`input_devices`] lists it), or the
/// default input, with its name.
pub(crate) fn find_input(name: Option<&str>) -> Result<(cpal::Device, String)> {
    let host = cpal::default_host();
    let Some(wanted) = name else {
        let device = host.default_input_device().ok_or_else(|| Error::NoMicrophone {
            reason: format!("the {} audio system has no default input", host.id().name()),
        })?;
        let name = describe(&device, true)?.name;
        return Ok((device, name));
    };
    let devices = host.input_devices().map_err(|err| Error::Backend(err.to_string()))?;
    for device in devices {
        if let Ok(input) = describe(&device, false)
            && input.name == wanted
        {
            return Ok((device, input.name));
        }
    }
    Err(Error::UnknownDevice { name: wanted.to_owned() })
}

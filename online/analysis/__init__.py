"""The physics analysis: efficiencies, binning, ON/OFF fit and limit, sensitivity, inputs."""

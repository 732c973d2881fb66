#!/bin/bash
# Placeholder owned by the <name>-files ConfigMap (haproxy disabled).

#pragma once
// Layers, containers, initialisers and losses.
#include <tensortape/nn/init.hpp>
#include <tensortape/nn/layers.hpp>
#include <tensortape/nn/loss.hpp>
#include <tensortape/nn/module.hpp>
#include <tensortape/nn/sequential.hpp>

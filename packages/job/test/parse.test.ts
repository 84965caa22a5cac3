import { describe, expect, it } from 'vitest';
import { formatUserError } from '@nst/core';
import { parseCount, parseLayerList, parseNumber, parseSize } from '@nst/job';

const fieldError = (field: string, detail: RegExp | string) =>
  expect.objectContaining({ name: 'UserError', field, detail: typeof detail === 'string' ? detail : expect.stringMatching(detail) });

describe('job field parsers', () => {
  it('parses layer lists and rejects bad ones with the field named', () => {
    expect(parseLayerList('conv4_2:1,conv5_2:0.5,block3_conv1', 'x')).toEqual([
      { layer: 'conv4_2', weight: 1 },
      { layer: 'conv5_2', weight: 0.5 },
      { layer: 'conv3_1', weight: 1 },
    ]);
    expect(() => parseLayerList('conv9_9', 'styleLayers')).toThrow(fieldError('styleLayers', /^unknown layer 'conv9_9'/));
    expect(() => parseLayerList('conv1_1:abc', 'styleLayers')).toThrow(fieldError('styleLayers', "'abc' is not a number"));
    expect(() => parseLayerList('', 'contentLayers')).toThrow(fieldError('contentLayers', /empty list/));
    expect(() => parseLayerList('conv4_2,block4_conv2:0.5', 'contentLayers')).toThrow(
      fieldError('contentLayers', 'layer conv4_2 is listed twice'),
    );
    // A colon promises a weight; weights that are all zero leave nothing to optimise.
    expect(() => parseLayerList('conv1_1:', 'styleLayers')).toThrow(fieldError('styleLayers', "'' is not a number"));
    expect(() => parseLayerList('conv1_1:0,conv2_1:0', 'styleLayers')).toThrow(fieldError('styleLayers', 'every layer has weight 0'));
    expect(parseLayerList('conv1_1:0,conv2_1:2', 'styleLayers')).toEqual([
      { layer: 'conv1_1', weight: 0 },
      { layer: 'conv2_1', weight: 2 },
    ]);
  });

  it('takes counts as decimal digits only', () => {
    expect(parseCount('200', 'iterations')).toBe(200);
    expect(parseCount(' 7 ', 'iterations')).toBe(7);
    for (const bad of ['0x10', '0b101', '1e3', '2.0', '-1', '', 'ten', 'Infinity'])
      expect(() => parseCount(bad, 'iterations'), bad).toThrow(fieldError('iterations', /is not a whole number/));
    expect(() => parseCount('4294967296', 'seed', 0, 2 ** 32 - 1)).toThrow(fieldError('seed', '4294967296 is out of range 0..4294967295'));
    expect(parseCount('4294967295', 'seed', 0, 2 ** 32 - 1)).toBe(4294967295);
  });

  it('takes numbers in decimal notation, finite', () => {
    expect(parseNumber('2', 'lr')).toBe(2);
    expect(parseNumber('-0.5', 'lr')).toBe(-0.5);
    expect(parseNumber('1e-3', 'lr')).toBe(0.001);
    expect(parseNumber('.5', 'lr')).toBe(0.5);
    for (const bad of ['0x10', 'NaN', 'Infinity', '1e999', '', '1,5', '2x'])
      expect(() => parseNumber(bad, 'lr'), bad).toThrow(fieldError('lr', /is not a (finite )?number/));
  });

  it('parses sizes', () => {
    expect(parseSize('400x300')).toEqual({ kind: 'exact', width: 400, height: 300 });
    expect(parseSize('512')).toEqual({ kind: 'longest', longest: 512 });
    expect(() => parseSize('0x10')).toThrow(fieldError('size', 'width 0 is out of range 1..16384'));
    expect(() => parseSize('big')).toThrow(fieldError('size', /is not WIDTHxHEIGHT/));
  });

  it("turns the field into the caller's name for it", () => {
    let caught: unknown;
    try {
      parseLayerList('conv9_9', 'contentLayers');
    } catch (e) {
      caught = e;
    }
    expect(formatUserError(caught as never, (f) => `--${f.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`)).toMatch(
      /^--content-layers: unknown layer 'conv9_9'/,
    );
  });
});

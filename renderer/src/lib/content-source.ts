// Inspector sources: a stable key per ContentSource and plain-words labels for them.
import type { ContentSource } from '../../../electron/core/contract';
import { basename } from './format';

export function sourceKey(s: ContentSource): string {
  switch (s.kind) {
    case 'bitmap':
      return `bitmap\0${s.layer}\0${s.name}`;
    case 'allocation':
      return `allocation\0${s.layer}`;
    case 'since':
      return `since\0${s.image}\0${s.checkpoint}`;
    case 'live-bitmap':
      return `live\0${s.connection}\0${s.node}\0${s.name}`;
  }
}

export function sourceLabel(s: ContentSource): string {
  switch (s.kind) {
    case 'bitmap':
      return `${s.name} in ${basename(s.layer)}`;
    case 'allocation':
      return `allocated in ${basename(s.layer)}`;
    case 'since':
      return `since ${s.checkpoint}`;
    case 'live-bitmap':
      return `${s.name} live on ${s.node}`;
  }
}

/** Short name for a lane label, with the rest in sourceSublabel. */
export function sourceShortLabel(s: ContentSource): string {
  switch (s.kind) {
    case 'bitmap':
      return s.name;
    case 'allocation':
      return basename(s.layer);
    case 'since':
      return `since ${s.checkpoint}`;
    case 'live-bitmap':
      return s.name;
  }
}

export function sourceSublabel(s: ContentSource): string {
  switch (s.kind) {
    case 'bitmap':
      return `bitmap in ${basename(s.layer)}`;
    case 'allocation':
      return 'allocated clusters';
    case 'since':
      return 'changes since checkpoint';
    case 'live-bitmap':
      return `live, node ${s.node}`;
  }
}

export function sourceDetail(s: ContentSource): string {
  switch (s.kind) {
    case 'bitmap':
      return `Dirty bitmap '${s.name}' in ${s.layer}`;
    case 'allocation':
      return `Clusters allocated in ${s.layer}`;
    case 'since':
      return `Changes since checkpoint '${s.checkpoint}' (union over the chain of ${s.image})`;
    case 'live-bitmap':
      return `Bitmap '${s.name}' of node ${s.node}, read live from QEMU over NBD`;
  }
}
